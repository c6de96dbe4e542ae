"""Frame sources: image, folder, video, USB camera (OpenCV), Picamera2, and the live camera the
service drives."""
