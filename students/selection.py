"""Which sessions die: decode a session to find its user, and decide whether that user is kept."""
import base64
import binascii
import json
import zlib
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core import signing
from django.utils import timezone
from django.utils.module_loading import import_string

LOGIN_TIME_KEY = "_students_login_time"  # written at login by students.signals.remember_login_time
REMEMBERED_KEY = "_students_remembered"  # "keep me signed in": written at login by students.remember
ZONE_KEY = "_students_zone"  # the user's time zone at login ("": the schedule's), by students.zones.stamp
# A login time more than this far ahead of this host's clock was stamped by a web host whose clock runs
# fast: it counts as older than any cutoff, or such a host could mint sessions that outlive the logout.
# Wide enough for the skew of clocks kept by NTP.
FUTURE_LOGIN_TOLERANCE_SECONDS = 300


class UnknownUsers(Exception):
    """An option named usernames that do not exist: --exclude-user (a typo must not silently keep
    nobody), --user (students.session_index: nothing is done)."""

    def __init__(self, usernames, option="--exclude-user", then=""):
        self.usernames = sorted(usernames)
        super().__init__(f"unknown username(s) for {option}: {', '.join(self.usernames)}{then}")


@dataclass(frozen=True)
class KeepRule:
    """The users (and "keep me signed in" sessions) that survive the run. Empty rule: everybody is
    logged out."""

    usernames: tuple = ()
    user_ids: frozenset = frozenset()   # str(pk), as Django stores it in the session
    keep_staff: bool = False
    staff_ids: frozenset = frozenset()
    keep_remembered: bool = False
    # With keep_remembered: the session keys of the remembered logins the purge checked
    # (students.purge.remembered.verified); each engine spares exactly these, nothing decoded.
    remembered: frozenset = frozenset()
    # A per-user time zone run (students.zones.restricted) that logs out only these users keeps
    # every other user's sessions, and the anonymous ones.
    only_user_ids: frozenset | None = None
    keep_anonymous: bool = False
    # What the ownership index says (students.purge.owners.indexed), when it holds any row: the keys
    # of the sessions whose row names a kept user and whose own data was checked to say so, and in a
    # per-user time zone run the keys whose row names a due user (each still decided by its data).
    indexed: bool = False
    indexed_kept: frozenset = frozenset()
    due_keys: frozenset = frozenset()

    @property
    def keeps_anyone(self):
        return bool(self.user_ids or self.staff_ids) or self.only_user_ids is not None or self.keep_anonymous

    def keeps(self, user_id):
        if user_id is None:
            return False  # anonymous: keep_anonymous, decided where the session is known to be one
        if self.only_user_ids is not None and user_id not in self.only_user_ids:
            return True
        return user_id in self.user_ids or user_id in self.staff_ids

    def keeps_unread(self, session, user_id):
        """A per-user time zone run keeps another zone's session (or an anonymous one) as it is
        stored, signature unchecked: a forged one is refused by Django when loaded, and the run of
        the zone it claims deletes it."""
        if self.only_user_ids is None or session is None:
            return False
        return self.keep_anonymous if user_id is None else user_id not in self.only_user_ids

    @property
    def kept_ids(self):
        return sorted(self.user_ids | self.staff_ids)


def users_named(usernames, option="--exclude-user", then=""):
    """The users with these usernames, in the order given, each once. Raises UnknownUsers (naming
    `option`) when any does not exist."""
    User = get_user_model()
    usernames = tuple(dict.fromkeys(usernames))  # keep order, drop repeats
    found = {user.get_username(): user
             for user in User._default_manager.filter(**{f"{User.USERNAME_FIELD}__in": usernames})}
    missing = set(usernames) - set(found)
    if missing:
        raise UnknownUsers(missing, option, then)
    return [found[name] for name in usernames]


def resolve_keep_rule(usernames=(), keep_staff=False, keep_remembered=False):
    """Look the users up once, so deciding a session is a set lookup. Raises UnknownUsers."""
    User = get_user_model()
    users = users_named(usernames)
    staff_ids = frozenset(
        str(pk) for pk in User._default_manager.filter(is_staff=True).values_list("pk", flat=True)
    ) if keep_staff else frozenset()
    return KeepRule(usernames=tuple(user.get_username() for user in users),
                    user_ids=frozenset(str(user.pk) for user in users),
                    keep_staff=keep_staff, staff_ids=staff_ids, keep_remembered=keep_remembered)


class Decoder:
    """Decode stored session data the way the engine's SessionStore does, without building a store
    per session. Returns None (not {}) for data that cannot be decoded, so the caller can tell
    'undecodable' from 'anonymous'."""

    def __init__(self, store_class):
        self.salt = "django.contrib.sessions." + store_class.__qualname__
        self.serializer = import_string(settings.SESSION_SERIALIZER)
        self.json = issubclass(self.serializer, signing.JSONSerializer)
        # What signing.loads() builds per call, built once: a quarter of each decode (measured 16.4 -> 12.5 µs).
        self.signer = signing.TimestampSigner(salt=self.salt)

    def decode(self, data):
        """Verify the signature and decode: what Django itself would accept."""
        try:
            value = self.signer.unsign_object(data, serializer=self.serializer)
        except Exception:  # bad signature, bad base64, bad JSON: all mean the same here
            return None
        return value if isinstance(value, dict) else None

    def peek(self, data):
        """Decode the payload WITHOUT checking the signature (the HMAC is most of decode()'s cost).

        Only good for sessions about to be deleted anyway: whatever a forged session claims,
        deleting it is safe. Anything that would be kept must go through decode()."""
        try:
            if self.json:
                user_id = _leading_user_id(data)
                if user_id is not None:
                    return {SESSION_KEY: user_id}
            payload = data.rsplit(":", 2)[0].encode()  # "[.]<base64>:<timestamp>:<signature>"
            compressed = payload[:1] == b"."
            raw = signing.b64_decode(payload[1:] if compressed else payload)
            value = self.serializer().loads(zlib.decompress(raw) if compressed else raw)
        except Exception:
            return None
        return value if isinstance(value, dict) else None


# What _leading_user_id reads of stored data: "." (compressed) and 88 base64 characters.
HEAD_CHARS = 89


def triage(keep, heads):
    """Sort (session_key, head) pairs, head being the first HEAD_CHARS of a live session's data:
    return how many certainly belong to a user the rule does not keep, and the keys whose whole
    data must be decoded (a kept user's, which needs its signature checked, or any that the head
    does not settle). Reading only heads keeps big purges cheap (Decoder.peek explains the trick)."""
    others, unsettled = 0, []
    for key, head in heads:
        user_id = _leading_user_id(head)
        if user_id is None or keep.keeps(user_id):
            unsettled.append(key)
        else:
            others += 1
    return others, unsettled


_BASE64_URLSAFE = bytes.maketrans(b"-_", b"+/")
_LEADING_USER = b'{"' + SESSION_KEY.encode() + b'":"'


def _leading_user_id(data):
    """The user id when it is the first key of Django's compact JSON, from the first 88 base64
    characters only, or None (then the caller parses the whole payload).

    Django's login() writes it into a fresh or cycled session, so it normally comes first. Decoding
    ~64 bytes instead of all of them (and no json.loads) made peek ~2.5x faster here. A first key
    is certainly the top-level one, so no nested dict can fool this."""
    compressed = data[:1] == "."  # "[.]<base64>:<timestamp>:<signature>"
    head = data[compressed:compressed + 88].split(":", 1)[0].encode()
    try:
        raw = binascii.a2b_base64(head.translate(_BASE64_URLSAFE) + b"=" * (-len(head) % 4))
        if compressed:
            raw = zlib.decompressobj().decompress(raw)  # a stream prefix gives an output prefix
    except (binascii.Error, zlib.error):
        return None
    if not raw.startswith(_LEADING_USER):
        return None
    start = len(_LEADING_USER)
    end = raw.find(b'"', start)
    value = raw[start:end]
    if end < 0 or b"\\" in value:  # cut off, or escapes: let json read it
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class PayloadPatterns:
    """Base64 text that lets a database rule out sessions that are certainly not kept, without
    decoding them, so only the rest needs Python (measured: most of --keep-staff's time on
    PostgreSQL was classifying the ~800k sessions that were going to die anyway).

    Stored data is "[.]<urlsafe base64 of compact JSON>:<timestamp>:<signature>"; "." means zlib.
    Whole 3-byte groups of a known byte string encode to known base64 text, so:
    - a payload that leads with the user id writes `leading_user` then the id's head; a session
      that leads with a user id none of `kept_heads` begins is not kept;
    - a payload holding the key "_auth_user_id" anywhere contains one of `user_key` (one per byte
      alignment); an uncompressed payload holding none of them is anonymous (or not ours).
    Heads are shortened to whole base64 characters, so they may also match other ids: such
    sessions, and compressed ones, are left to Decoder, which decides exactly.
    """

    leading_user: str
    kept_heads: tuple  # ((length, (head, ...)), ...): heads grouped by length, for `left(x, n) = ANY`
    user_key: tuple

    @classmethod
    def for_rule(cls, keep, decoder):
        """The patterns for this rule, or None when sessions are not JSON (nothing to match) or the
        rule keeps everyone but a few (a per-user time zone run: the patterns rule out the kept)."""
        if not decoder.json or keep.only_user_ids is not None or keep.keep_anonymous:
            return None
        heads = {}
        for user_id in keep.kept_ids:
            head = _whole_chars(_LEADING_USER[:-1] + json.dumps(user_id).encode())
            heads.setdefault(len(head), set()).add(head)
        token = b'"' + SESSION_KEY.encode() + b'"'
        return cls(
            leading_user=_whole_chars(_LEADING_USER),
            kept_heads=tuple((n, tuple(sorted(group))) for n, group in sorted(heads.items())),
            user_key=tuple(_whole_chars(token[skip:][:(len(token) - skip) // 3 * 3]) for skip in range(3)),
        )


def _whole_chars(raw):
    """The base64 characters that `raw` alone decides, when it starts on a 3-byte boundary."""
    return base64.urlsafe_b64encode(raw).decode()[:len(raw) * 4 // 3]


def logged_in_before(session_dict, instant):
    """True when this authenticated session's login time is before epoch `instant`, or counts as
    older than any cutoff: missing (a session made before this app stamped it) or later than this
    host's now (Django's clock, the one logins are stamped with) + FUTURE_LOGIN_TOLERANCE_SECONDS.
    The one comparison of login times with cutoffs: the middleware's (students.cutoff) and the
    purge's (began_before)."""
    logged_in_at = session_dict.get(LOGIN_TIME_KEY)
    if not isinstance(logged_in_at, (int, float)) or logged_in_at < instant:
        return True
    return logged_in_at > timezone.now().timestamp() + FUTURE_LOGIN_TOLERANCE_SECONDS  # only read when it may count


def began_before(session_dict, instant):
    """True when this decoded session's user logged in before epoch `instant` (logged_in_before).
    An anonymous session began nobody's login: False, so a scheduled run spares it when it was
    saved since its instant."""
    if user_id_of(session_dict) is None:
        return False
    return logged_in_before(session_dict, instant)


def user_id_of(session_dict):
    """The str(pk) of the logged-in user, or None for an anonymous (or undecodable) session."""
    if not session_dict:
        return None
    value = session_dict.get(SESSION_KEY)
    return None if value is None else str(value)
