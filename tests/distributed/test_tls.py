"""Rank 0's self-signed certificate: what it names, and the error when ``cryptography`` is missing."""

from __future__ import annotations

import ipaddress
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from onthefly.distributed.tls import MULTINODE_INSTALL, self_signed


def test_the_certificate_names_every_address_the_ranks_dial_and_carries_no_key():
    identity = self_signed(["node0.cluster", "10.1.2.3", "10.1.2.3"])
    cert = x509.load_pem_x509_certificate(identity.certificate)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node0.cluster"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert b"PRIVATE KEY" not in identity.certificate  # what is shared holds no key
    key = load_pem_private_key(identity.private_key, password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert "private_key" not in repr(identity)


def test_a_missing_cryptography_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography", None)  # import cryptography now raises ImportError
    with pytest.raises(ImportError, match=MULTINODE_INSTALL.replace("[", r"\[").replace("]", r"\]")):
        self_signed(["10.1.2.3"])
