"""Jinja filters the playbook loads from the folder next to it (Ansible's filter_plugins)."""
