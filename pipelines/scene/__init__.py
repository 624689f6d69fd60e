"""The metric scene around the people: ground plane from their feet (ground), the depth map scaled into
metres by their meshes and the ground (zbuffer, refine), the point cloud (pointcloud), depth files
(depth_file), and the image mode's call (frame_scene)."""
