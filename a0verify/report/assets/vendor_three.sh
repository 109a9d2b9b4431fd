#!/usr/bin/env bash
# Rebuild three.min.js (the report's 3-D view library) from the npm registry: three.js at the
# pinned version, bundled with esbuild into one minified script that defines the global
# A0THREE (only the classes three-entry.js exports). The bundle is committed as package data;
# nothing is fetched when a report is written or viewed.
set -euo pipefail
THREE_VERSION=0.187.0
ESBUILD_VERSION=0.25.12
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "three@$THREE_VERSION" "esbuild@$ESBUILD_VERSION"
cp "$here/three-entry.js" entry.js
{
  echo "/*! three.js r${THREE_VERSION:2:3} (npm three@$THREE_VERSION, https://threejs.org) | MIT License, Copyright (c) 2010-2026 three.js authors | see three.LICENSE.txt | bundled for a0verify by vendor_three.sh */"
  ./node_modules/.bin/esbuild entry.js --bundle --minify --format=iife --global-name=A0THREE \
    --legal-comments=none --target=es2020
} > "$here/three.min.js"
cp node_modules/three/LICENSE "$here/three.LICENSE.txt"
echo "wrote $here/three.min.js ($(wc -c < "$here/three.min.js") bytes)"
