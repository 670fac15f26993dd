"""Outbound server-server HTTP: discovery, the signed transport, typed endpoint calls.

Layering (each imports only the ones above it, and ``federation.core``)::

    errors      the package's exception tree (httpx errors never leave the package)
    discovery   server name → targets, Host header, certificate name (.well-known, SRV, 8448)
    transport   destination guard, TLS, X-Matrix signing, one pooled httpx client
    api         FederationClient: one typed method per endpoint
"""

from federation.client.api import FederationClient
from federation.client.discovery import ResolvedServer, ServerResolver, SystemDnsResolver
from federation.client.errors import (
    DestinationBlocked,
    DestinationUnreachable,
    FederationError,
    InvalidResponse,
    RemoteServerError,
)
from federation.client.transport import DestinationPolicy, FederationTransport

__all__ = [
    "DestinationBlocked",
    "DestinationPolicy",
    "DestinationUnreachable",
    "FederationClient",
    "FederationError",
    "FederationTransport",
    "InvalidResponse",
    "RemoteServerError",
    "ResolvedServer",
    "ServerResolver",
    "SystemDnsResolver",
]
