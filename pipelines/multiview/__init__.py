"""Multi-view mode: calibrated cameras, video frames and triangulation of keypoints across views."""
