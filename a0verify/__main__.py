from a0verify.cli import entry

if __name__ == "__main__":
    entry()
