"""Third-party invites and binding third-party identifiers at identity servers.

Spec: client-server-api › Third-party invites (modules/third_party_invites.md): "A client
asks a server to invite a user by their third-party identifier." The server looks the address
up at the identity server (:meth:`IdentityServerClient.lookup`); a bound address is invited as
the Matrix user it is bound to; otherwise the server stores the invite at the identity server
(``store-invite``) and sends an ``m.room.third_party_invite`` state event whose state key is
the token. When the address is later bound, the identity server calls our
``POST /_matrix/federation/v1/3pid/onbind`` with the signed invites; for each invite into a room
of ours from a local sender the invite membership event is sent, carrying
``third_party_invite.signed`` (the auth rules check its signature against the keys of the
``m.room.third_party_invite`` event).

Also ``/account/3pid/bind`` and ``/account/3pid/unbind`` (client-server-api › Adding Account
Administrative Contact Information): the identity server does the binding; nothing is stored
here. Without a record of which identity server a binding went to, an unbind needs the client
to name ``id_server``.

No state: every call goes to the room service and the identity server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from federation.client import FederationTransport
from federation.client.errors import FederationError
from federation.core.auth_rules import verify_third_party_signed
from homeserver.errors import Forbidden, InvalidParam, MatrixError, MissingParam
from homeserver.services.identity_server import IdentityServerClient, check_id_server
from homeserver.services.requester import Requester
from homeserver.services.rooms import RoomService
from homeserver.storage.events import EventStore

__all__ = ["ThirdPartyInvite", "ThirdPartyInviteService", "parse_third_party_invite"]


class ThirdPartyInvite:
    """One third-party invite as a client gives it (``invite_3pid`` entry or invite body)."""

    __slots__ = ("address", "id_access_token", "id_server", "medium")

    def __init__(self, id_server: str, id_access_token: str, medium: str, address: str) -> None:
        self.id_server = id_server
        self.id_access_token = id_access_token
        self.medium = medium
        self.address = address


def parse_third_party_invite(body: Mapping[str, Any]) -> ThirdPartyInvite:
    """``id_server``, ``id_access_token``, ``medium``, ``address`` (all required strings).

    Raises:
        MissingParam: one is absent. InvalidParam: one is not a non-empty string, or
        ``id_server`` is not a server name.
    """
    values: dict[str, str] = {}
    for key in ("id_server", "id_access_token", "medium", "address"):
        value = body.get(key)
        if value is None:
            raise MissingParam(f"Missing {key!r}")
        if not isinstance(value, str) or not value:
            raise InvalidParam(f"{key!r} must be a non-empty string")
        values[key] = value
    check_id_server(values["id_server"])
    return ThirdPartyInvite(**values)


class ThirdPartyInviteService:
    """Third-party invites into local rooms, their completion on binding, and 3PID binding.

    Args:
        rooms: the room service (membership and state events go through it).
        events: the room state (the ``m.room.third_party_invite`` events).
        identity: the identity-server client.
        server_name: ours (an onbind invite is completed here only when its sender is local).
        federation: signed requests to other servers (``exchange_third_party_invite``);
            None: federation is off.
    """

    def __init__(
        self,
        rooms: RoomService,
        events: EventStore,
        identity: IdentityServerClient,
        *,
        server_name: str,
        federation: FederationTransport | None = None,
    ) -> None:
        self._federation = federation
        self._rooms = rooms
        self._events = events
        self._identity = identity
        self._server_name = server_name

    async def invite(self, requester: Requester, room_id: str, invite: ThirdPartyInvite) -> None:
        """Invite by third-party identifier (spec: third_party_membership.yaml): the bound
        user directly, else a stored invite and an ``m.room.third_party_invite`` event."""
        if requester.is_guest:
            raise Forbidden("Guests cannot invite")
        mxid = await self._identity.lookup(
            invite.id_server, invite.id_access_token, invite.medium, invite.address
        )
        if mxid is not None:
            await self._rooms.set_membership(requester, room_id, mxid, "invite", action="invite")
            return
        # the sender must be able to send the event at all before the identity server stores
        # anything; the auth rules (invite level) decide when the event is created
        stored = await self._identity.store_invite(
            invite.id_server,
            invite.id_access_token,
            {
                "medium": invite.medium,
                "address": invite.address,
                "room_id": room_id,
                "sender": requester.user_id,
            },
        )
        public_keys = [
            {k: v for k, v in key.items() if k in ("public_key", "key_validity_url")}
            for key in stored["public_keys"]
        ]
        first = public_keys[0]
        content: dict[str, Any] = {
            "display_name": stored.get("display_name")
            if isinstance(stored.get("display_name"), str)
            else invite.address[:3] + "...",
            "public_keys": public_keys,
            "public_key": first["public_key"],
        }
        if isinstance(first.get("key_validity_url"), str):
            content["key_validity_url"] = first["key_validity_url"]
        await self._rooms.send(
            requester,
            room_id,
            "m.room.third_party_invite",
            content,
            state_key=stored["token"],
        )

    async def on_bind(self, body: Mapping[str, Any]) -> None:
        """``POST /_matrix/federation/v1/3pid/onbind``: send the invite event of each stored
        invite into a room whose inviter is local. Every invite is tried; if any is refused
        the answer is ``403 M_FORBIDDEN`` (as Synapse, which stops at the first).

        Raises:
            MissingParam: no ``mxid``. InvalidParam: ``invites`` is not a list.
            Forbidden: an invite was refused (the others were still sent).
        """
        invites = body.get("invites")
        mxid = body.get("mxid")
        if not isinstance(mxid, str):
            raise MissingParam("Missing 'mxid'")
        if invites is None:
            return
        if not isinstance(invites, list):
            raise InvalidParam("'invites' must be a list")
        refused = [entry for entry in invites if not await self._complete(entry)]
        if refused:
            raise Forbidden(f"{len(refused)} of the third-party invites could not be completed")

    async def _complete(self, entry: object) -> bool:
        """Send one stored invite's invite event; False when it is refused (malformed, no
        such ``m.room.third_party_invite``, a signature no valid key of it verifies, or the
        auth rules refuse the event). An invite from another server's user goes to that
        server (``exchange_third_party_invite``)."""
        if not isinstance(entry, dict):
            return False
        room_id, sender, signed = entry.get("room_id"), entry.get("sender"), entry.get("signed")
        if not isinstance(room_id, str) or not isinstance(sender, str):
            return False
        if not isinstance(signed, dict):
            return False
        if not sender.endswith(":" + self._server_name):
            return await self._exchange_remote(room_id, sender, signed)
        return await self._send_invite(room_id, sender, signed)

    async def _exchange_remote(self, room_id: str, sender: str, signed: dict[str, Any]) -> bool:
        target = signed.get("mxid")
        if self._federation is None or not isinstance(target, str):
            return False
        event = {
            "type": "m.room.member",
            "room_id": room_id,
            "sender": sender,
            "state_key": target,
            "content": {"membership": "invite", "third_party_invite": {"signed": signed}},
        }
        try:
            await self._federation.request(
                sender.partition(":")[2],
                "PUT",
                f"/_matrix/federation/v1/exchange_third_party_invite/{quote(room_id, safe='')}",
                content=event,
            )
        except (FederationError, MatrixError):
            return False
        return True

    async def on_exchange(self, origin: str, room_id: str, event: Mapping[str, Any]) -> None:
        """``PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}``: another
        server got the identity server's ``onbind`` for an invite one of our users made; the
        invite event is checked and sent as for a local ``onbind``.

        Raises:
            InvalidParam: not an invite member event of this room from a local sender.
            Forbidden: the invite is refused (see :meth:`_send_invite`).
        """
        content = event.get("content")
        sender = event.get("sender")
        invite = content.get("third_party_invite") if isinstance(content, dict) else None
        signed = invite.get("signed") if isinstance(invite, dict) else None
        if (
            event.get("type") != "m.room.member"
            or event.get("room_id") != room_id
            or not isinstance(sender, str)
            or not sender.endswith(":" + self._server_name)
            or not isinstance(content, dict)
            or content.get("membership") != "invite"
            or not isinstance(signed, dict)
            or signed.get("mxid") != event.get("state_key")
        ):
            raise InvalidParam("Not a third-party invite from a user of this server")
        if not await self._send_invite(room_id, sender, signed):
            raise Forbidden("The third-party invite could not be verified")

    async def _send_invite(self, room_id: str, sender: str, signed: dict[str, Any]) -> bool:
        target, token = signed.get("mxid"), signed.get("token")
        if not isinstance(target, str) or not isinstance(token, str):
            return False
        stored = await self._events.get_current_state_event(
            room_id, "m.room.third_party_invite", token
        )
        if stored is None or not await self._signed_by_valid_key(signed, stored.event.content):
            return False
        member = await self._events.get_current_state_event(room_id, "m.room.member", target)
        if member is not None and member.event.content.get("membership") in ("join", "invite"):
            return True  # already there: nothing to do
        third_party: dict[str, Any] = {"signed": signed}
        display_name = stored.event.content.get("display_name")
        if isinstance(display_name, str):
            third_party["display_name"] = display_name
        try:
            await self._rooms.send(
                Requester(sender, None),
                room_id,
                "m.room.member",
                {"membership": "invite", "third_party_invite": third_party},
                state_key=target,
            )
        except MatrixError:
            return False
        return True

    async def _signed_by_valid_key(
        self, signed: Mapping[str, Any], invite_content: Mapping[str, Any]
    ) -> bool:
        """``signed`` verifies with one of the invite event's public keys, and that key's
        ``key_validity_url`` says it is still valid (Synapse checks revocation the same way;
        an identity server that cannot be reached does not vouch for its key)."""
        keys: list[tuple[str, Any]] = []
        if isinstance(invite_content.get("public_key"), str):
            keys.append((invite_content["public_key"], invite_content.get("key_validity_url")))
        more = invite_content.get("public_keys")
        for entry in more if isinstance(more, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                keys.append((entry["public_key"], entry.get("key_validity_url")))
        for public_key, url in keys:
            if not verify_third_party_signed(signed, public_key):
                continue
            if isinstance(url, str) and await self._identity.key_is_valid(url, public_key):
                return True
        return False

    # --- binding --------------------------------------------------------------------------

    async def bind(
        self,
        requester: Requester,
        *,
        id_server: str,
        id_access_token: str,
        sid: str,
        client_secret: str,
    ) -> None:
        """``POST /account/3pid/bind``: the identity server binds its validated session's
        address to the requester."""
        await self._identity.bind(id_server, id_access_token, sid, client_secret, requester.user_id)

    async def unbind(
        self, requester: Requester, *, id_server: str, medium: str, address: str
    ) -> str:
        """``POST /account/3pid/unbind``: ``success`` if the identity server removed the
        binding, ``no-support`` if it had none."""
        removed = await self._identity.unbind(id_server, requester.user_id, medium, address)
        return "success" if removed else "no-support"
