"""Ship the models to the kiosks as a signed bundle with Ansible: ``make deploy KIOSKS="pi@k1"``.

The engineer's machine builds and signs the bundle (``deploy.bundle``); ``deploy/playbook.yml``
copies it to each kiosk, checks it there, switches to it, restarts the service, gates on health
and rolls back in a ``rescue`` block. ``python -m deploy`` ties the two together (docs/deploy.md).
"""
