"""SMB2/3 session set-up as the wire shows it ([MS-SMB2] 2.2.3-2.2.6): the dialect the
server chose in its NEGOTIATE response, the account an NTLMSSP AUTHENTICATE message
([MS-NLMP] 2.2.1.3) names in a SESSION_SETUP request, and the status of the SESSION_SETUP
response (success, or why the logon failed). Kerberos logons name no account in clear.
Only the first SMB2 message of a segment is read (both engines alike)."""

from __future__ import annotations

import struct

PORTS = frozenset({445, 139})
NEGOTIATE, SESSION_SETUP = 0, 1
MORE_PROCESSING = 0xC0000016
STATUS = {0: "STATUS_SUCCESS", 0xC000006D: "STATUS_LOGON_FAILURE",
          0xC000006A: "STATUS_WRONG_PASSWORD", 0xC0000064: "STATUS_NO_SUCH_USER",
          0xC0000234: "STATUS_ACCOUNT_LOCKED_OUT", 0xC0000072: "STATUS_ACCOUNT_DISABLED",
          0xC000006F: "STATUS_INVALID_LOGON_HOURS", 0xC0000071: "STATUS_PASSWORD_EXPIRED",
          0xC0000022: "STATUS_ACCESS_DENIED", 0xC000015B: "STATUS_LOGON_TYPE_NOT_GRANTED"}
DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1",
            0x02FF: "2.???"}
NTLM_AUTH = b"NTLMSSP\x00\x03\x00\x00\x00"
_HDR = struct.Struct("<8xIH2xI").unpack_from  # after NBSS: status, command, flags
_FIELD = struct.Struct("<HxxI").unpack_from  # NTLMSSP field: length, (max), offset


def status_name(status: int) -> str:
    return STATUS.get(status, f"0x{status:08X}")


def dialect_name(dialect: int) -> str:
    return DIALECTS.get(dialect, f"0x{dialect:04X}")


def parse(data: bytes) -> dict | None:
    """The first SMB2 message of a NetBIOS session segment -> {"command", "response",
    "status", "dialect" (negotiate response), "user", "domain" (NTLM authenticate)}."""
    if len(data) < 4 + 64 or data[0] != 0 or data[4:8] != b"\xfeSMB":
        return None
    status, command, flags = _HDR(data, 4)
    out: dict = {"command": command, "response": bool(flags & 1), "status": status}
    body = 4 + 64
    if command == NEGOTIATE and out["response"] and len(data) >= body + 6:
        out["dialect"] = struct.unpack_from("<H", data, body + 4)[0]
    elif command == SESSION_SETUP and not out["response"]:
        at = data.find(NTLM_AUTH, body)
        if at >= 0 and len(data) >= at + 64:
            unicode = bool(data[at + 60] & 1)
            for key, off in (("domain", 28), ("user", 36)):
                n, where = _FIELD(data, at + off)
                raw = data[at + where:at + where + n]
                if len(raw) == n and n:
                    out[key] = raw.decode("utf-16-le" if unicode else "latin-1",
                                          "backslashreplace")
    return out
