"""``make test-deploy``: deploy/Dockerfile built with buildah and run (see check_image.py)."""
