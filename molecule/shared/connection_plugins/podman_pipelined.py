"""The containers.podman.podman connection with pipelining, for the Molecule scenarios.

Every task over the bundled connection (containers.podman 1.18.0, the newest that PyPI's `ansible`
package bundles) costs four podman commands: `podman mount`, then `exec` to make a temporary folder,
to run the module copied there and to remove it. With pipelining the module goes to Python's stdin in
one `podman exec -i`, and the container is mounted only when a file is copied. containers.podman 1.19
does the same upstream; remove this file once the `ansible` package bundles it.
"""

import shlex

from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

DOCUMENTATION = """
    name: podman_pipelined
    short_description: containers.podman.podman, with pipelining and a lazy mount
    description:
      - Runs commands in an existing Podman container as containers.podman.podman does, feeding a
        pipelined module through C(podman exec -i), and mounts the container only to copy files.
    extends_documentation_fragment: []
    options:
      remote_addr:
        description: The name or ID of the container.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: The user to run commands as in the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments to the podman command.
        default: ''
        vars:
          - name: ansible_podman_extra_args
      podman_executable:
        description: The podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
"""


class Connection(PodmanConnection):
    transport = "podman_pipelined"
    has_pipelining = True

    def _connect(self):
        # The bundled plugin runs `podman mount` here, for every task; mount only to copy a file.
        ConnectionBase._connect(self)
        self._connected = True

    def _mount_once(self):
        if self._mount_point is None:
            super()._connect()

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        if in_data is None:
            return super().exec_command(cmd, in_data=None, sudoable=sudoable)
        # The bundled plugin leaves stdin closed (no -i), which is all pipelining needs.
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        exec_args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
        return self._podman(exec_args, shlex.split(cmd), in_data)

    def put_file(self, in_path, out_path):
        self._mount_once()
        super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._mount_once()
        super().fetch_file(in_path, out_path)
