// Entry of the vendored three.js bundle (a0verify/report/assets/three.min.js): only what the
// report's 3-D view uses, exposed as the global A0THREE. Rebuild with ./vendor_three.sh.
export {
  AmbientLight, BufferAttribute, BufferGeometry, Color, DirectionalLight, DoubleSide, Group,
  HemisphereLight, Mesh, MeshBasicMaterial, MeshPhongMaterial, PerspectiveCamera, Raycaster,
  Scene, SphereGeometry, Vector2, Vector3, WebGLRenderer, ArrowHelper, Matrix4, Box3, Sphere,
} from 'three';
export { TrackballControls } from 'three/addons/controls/TrackballControls.js';
export { OrbitControls } from 'three/addons/controls/OrbitControls.js';
