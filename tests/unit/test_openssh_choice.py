"""The OpenSSH client is chosen per profile and travels with the host (no connection here;
tests/integration/test_transport_openssh.py runs it against the real sshd)."""

from __future__ import annotations

import os

import pytest

from pbsvllm.config import resolve
from pbsvllm.errors import ConfigError, TransportError
from pbsvllm.transport import get_transport
from pbsvllm.transport.openssh import OpenSSHTransport, _destination
from pbsvllm.transport.ssh import SSHTransport
from tests.paths import EXAMPLES


def test_example_profile_selects_openssh():
    s = resolve({}, env={"PBSVLLM_CONFIG": os.path.join(EXAMPLES, "ssh", "mfa-profile.toml")})
    assert s.profile.ssh_client == "openssh" and s.host == "openssh://polaris-mfa"
    t = get_transport(s.host, fresh=True)
    assert isinstance(t, OpenSSHTransport) and t.destination == "polaris-mfa" and t.calls == 0


def test_default_and_explicit_schemes():
    assert resolve({"profile": "pbspro", "host": "me@h"}, env={}).host == "me@h"
    assert resolve({"profile": "pbspro", "host": "ssh://me@h", "ssh_client": "openssh"}, env={}).host == "ssh://me@h"
    assert resolve({"profile": "pbspro", "host": "me@h", "ssh_client": "openssh"}, env={}).host == "openssh://me@h"
    assert isinstance(get_transport("me@h", fresh=True, ssh_config=None), SSHTransport)
    with pytest.raises(ConfigError, match="PBSVLLM_SSH_CLIENT must be one of paramiko, openssh"):
        resolve({"profile": "pbspro", "host": "h"}, env={"PBSVLLM_SSH_CLIENT": "putty"})


def test_host_specs():
    assert _destination("me@login.example:2222") == ("me@login.example", 2222)
    assert _destination("polaris") == ("polaris", None)
    assert _destination("u@[::1]:22") == ("u@::1", 22)
    for bad in ("-oProxyCommand=x", "a b", "h'x", ""):
        with pytest.raises(TransportError):
            OpenSSHTransport(bad)
