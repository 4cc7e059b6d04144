"""The fill: N sessions in the realistic mix of a busy term-time site, generated once from a seed, and
what each approach must leave of them.

Every session's data is encoded and signed as Django's own SessionStore would (one real payload per
user, then a cheap signature per row); each login also gets its ownership-index row and, for "keep me
signed in" ones, its RememberedLogin row. `Fill.judge` compares what an approach left with the fill,
key by key. Where the fill is written (a database, Redis, a folder) is benchmarks.stores' concern.
`one_user_among` is bench_logout_user's simpler store: one user's sessions among many.
"""
import datetime as dt
import random
import time

BENCH_PASSWORD = "bench-password-1"  # every generated user has it, so bench_site_up can log in
SESSION_COOKIE_AGE = 14 * 86400  # Django's default, which lcstats keeps: a save sets expiry = save + this
LEAVE_ROWS = {"naive", "per_session"}  # the peers know nothing of the index: its rows are not checked after them
# The mix of a busy term-time site: most sessions belong to logged-in students, a few to staff,
# some are anonymous (language choice, messages), a fifth are expired and waiting for clearsessions.
# "remembered": students who ticked "Keep me signed in" (students.remember): a marker, an expiry fixed at
# login + SESSION_COOKIE_AGE, and a RememberedLogin row each.
MIX = [("staff", 0.005), ("student", 0.550), ("remembered", 0.050), ("anonymous", 0.195),
       ("expired_user", 0.140), ("expired_anonymous", 0.060)]
ANONYMOUS_DATA = [{"django_language": "ga"}, {"django_language": "en-gb"},
                  {"_messages": '[["__json_message",0,20,"Please log in to see your statistics."]]'}]
ZONE_HOUR_ZONE = "Asia/Tokyo"  # ours_zone_hour: the zone its hourly run stands for
ZONE_HOUR_EVERY = 10  # every tenth student (by id) lives there


class Fill:
    """N sessions, generated once from a seed and loaded again, identically, before each approach.

    live_only: no expired sessions (the cache engine: Redis drops a key when its TTL runs out)."""

    def __init__(self, n, seed=1, live_only=False):
        self.n = n
        self.seed = seed
        self.mix = [(kind, share) for kind, share in MIX if not (live_only and kind.startswith("expired"))]
        self.counts = {kind: 0 for kind, _ in self.mix}
        self.rows = []  # (session_key, session_data, expire_date as naive UTC datetime, decoded data)
        self.keys_of = {kind: set() for kind, _ in self.mix}
        self.remembered = []  # (session_key, user id, login time as epoch seconds): the RememberedLogin rows
        self.zone_hour_keys = set()  # sessions of the users in ZONE_HOUR_ZONE: what ours_zone_hour logs out
        self.owners = []  # (session_key, user id, login time as epoch seconds): the ownership index's rows

    def create_users(self):
        """One user per ten sessions; 1 in 500 is staff. Returns (student ids, staff ids)."""
        from django.contrib.auth.hashers import make_password
        from django.contrib.auth.models import User

        password = make_password(BENCH_PASSWORD)  # hashed once: PBKDF2 is slow on purpose
        n_users = max(10, self.n // 10)
        n_staff = max(2, n_users // 500)
        users = [User(username=f"student{i:07d}", password=password, is_staff=False)
                 for i in range(n_users - n_staff)]
        users += [User(username=f"staff{i:05d}", password=password, is_staff=True)
                  for i in range(n_staff)]
        User.objects.bulk_create(users, batch_size=5000)
        ids = dict(User.objects.values_list("id", "is_staff"))
        return [i for i, s in ids.items() if not s], [i for i, s in ids.items() if s], password

    def generate(self):
        """Encode one real session payload per user (signed by Django), then pick cheaply per row."""
        from django.conf import settings
        from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, BACKEND_SESSION_KEY
        from django.contrib.auth.models import User
        from importlib import import_module

        from students.selection import LOGIN_TIME_KEY
        from students.selection import REMEMBERED_KEY

        if settings.SESSION_COOKIE_AGE != SESSION_COOKIE_AGE:
            raise RuntimeError(f"the fill assumes SESSION_COOKIE_AGE = {SESSION_COOKIE_AGE}")
        students, staff, _ = self.create_users()
        zone_hour_users = set(zone_hour_user_ids(students))
        store = import_module(settings.SESSION_ENGINE).SessionStore()
        user_hash = User.objects.get(id=students[0]).get_session_auth_hash()  # same password for all

        login_time = time.time() - 86400  # students.cutoff stamps every login with this key

        def payload(uid):
            return {SESSION_KEY: str(uid), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                    HASH_SESSION_KEY: user_hash, LOGIN_TIME_KEY: login_time}

        self.payloads = {uid: payload(uid) for uid in students + staff}
        # A remembered login: expiry fixed at the login (set_expiry with a datetime stores it in the data).
        remembered_until = dt.datetime.fromtimestamp(login_time + SESSION_COOKIE_AGE, dt.timezone.utc)
        remembered_payloads = {}

        def remembered_payload(uid):
            if uid not in remembered_payloads:
                data = {**self.payloads[uid], REMEMBERED_KEY: True, "_session_expiry": remembered_until.isoformat()}
                remembered_payloads[uid] = (data, store.encode(data).split(":")[0])
            return remembered_payloads[uid]
        # Django encodes `<payload>:<timestamp>:<signature>`. Encode each user's payload once, then give
        # every session its own timestamp and a real signature: unique, valid data at ~2 us a row.
        encoded = {uid: store.encode(data).split(":")[0] for uid, data in self.payloads.items()}
        anonymous = [(d, store.encode(d).split(":")[0]) for d in ANONYMOUS_DATA]
        sign = session_signer(store)
        rng = random.Random(self.seed)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        cumulative, total, whole = [], 0.0, sum(share for _, share in self.mix)
        for kind, share in self.mix:
            total += share
            cumulative.append((total / whole, kind))
        for _ in range(self.n):
            r = rng.random()
            kind = next((k for c, k in cumulative if r < c), cumulative[-1][1])
            self.counts[kind] += 1
            key = "%032x" % rng.getrandbits(128)
            self.keys_of[kind].add(key)
            if kind in ("student", "expired_user"):
                uid = rng.choice(students)
                data, text = self.payloads[uid], encoded[uid]
            elif kind == "staff":
                uid = rng.choice(staff)
                data, text = self.payloads[uid], encoded[uid]
            elif kind == "remembered":
                uid = rng.choice(students)
                data, text = remembered_payload(uid)
                self.remembered.append((key, uid, login_time))
            else:
                data, text = rng.choice(anonymous)
            if kind in ("student", "remembered", "expired_user") and uid in zone_hour_users:
                self.zone_hour_keys.add(key)
            if kind in ("student", "staff", "remembered", "expired_user"):  # a login: the server wrote its row
                self.owners.append((key, uid, login_time))
            if kind == "remembered":
                expire = remembered_until.replace(tzinfo=None)  # fixed at login; last saved at the login
            elif kind.startswith("expired"):
                expire = now - dt.timedelta(seconds=rng.uniform(60, 30 * 86400))
            else:
                expire = now + dt.timedelta(seconds=rng.uniform(86400, 14 * 86400))
            # Saved when it was last modified: SESSION_COOKIE_AGE before it expires.
            self.rows.append((key, sign(text, utc_timestamp(expire) - SESSION_COOKIE_AGE), expire, data))
        sample = self.rows[0]
        if store.decode(sample[1]) != sample[3]:
            raise RuntimeError("generated session data does not decode: Django's signing format changed?")

    @property
    def live_rows(self):
        """What cached_db (and the cache engine) holds in Redis: every live session."""
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return [row for row in self.rows if row[2] > now]

    @property
    def indexed_keys(self):
        return {key for key, _, _ in self.owners}

    def index_rows(self):
        """The index's rows as text lines for COPY / executemany: key, user id, zone (none stamped in
        this fill), login time (UTC)."""
        for key, uid, login in self.owners:
            yield key, str(uid), "", dt.datetime.fromtimestamp(login, dt.timezone.utc).isoformat(" ")

    def must_keep(self, approach):
        if approach in ("ours_zone_hour", "floor_zone_keys"):  # every live session but the Tokyo users'
            # (all began a day ago)
            live = set().union(*(keys for kind, keys in self.keys_of.items() if not kind.startswith("expired")))
            return live - self.zone_hour_keys
        return {"ours_keep_staff": self.keys_of["staff"],
                "ours_keep_remembered": self.keys_of["remembered"]}.get(approach, set())

    def write_remembered(self):
        """The RememberedLogin rows of the fill's remembered sessions, as the login view writes them."""
        from django.db import connection

        from students.models import RememberedLogin

        RememberedLogin.objects.all().delete()
        RememberedLogin.objects.bulk_create(
            (RememberedLogin(session_key=key, user_id=str(uid),
                             logged_in_at=dt.datetime.fromtimestamp(login, dt.timezone.utc),
                             expires_at=dt.datetime.fromtimestamp(login + SESSION_COOKIE_AGE, dt.timezone.utc))
             for key, uid, login in self.remembered), batch_size=5000)
        connection.close()

    def judge(self, approach, left):
        """What is wrong with what an approach left (empty: nothing). ours_late spares anonymous
        sessions saved since the time it stands for (every login in the fill is a day old, so no
        signed-in one): some of the live anonymous ones, nothing else."""
        wrong = []
        if approach == "ours_late":
            if not left["sessions"] <= self.keys_of["anonymous"]:
                wrong.append(f"{len(left['sessions'] - self.keys_of['anonymous']):,} non-anonymous sessions left")
        elif left["sessions"] != self.must_keep(approach):
            wrong.append(f"sessions left: {len(left['sessions']):,}, of which "
                         f"{len(left['sessions'] - self.must_keep(approach)):,} should be gone and "
                         f"{len(self.must_keep(approach) - left['sessions']):,} kept ones are missing")
        # cached_db: no cache key may outlive its row (Session.objects.all().delete() leaves them all).
        if left["cache_keys"] is not None and approach != "naive":
            stale = left["cache_keys"] - left["sessions"]
            if stale:
                wrong.append(f"{len(stale):,} cache keys of deleted sessions left")
        if left["unrelated_missing"]:
            wrong.append("unrelated deleted or changed: " + ", ".join(left["unrelated_missing"]))
        # The index follows: exactly the rows of the indexed sessions left (none of a deleted session).
        if approach not in LEAVE_ROWS and left["rows"] != self.indexed_keys & left["sessions"]:
            wrong.append(f"index rows left: {len(left['rows']):,}, of which "
                         f"{len(left['rows'] - left['sessions']):,} of deleted sessions; "
                         f"{len(self.indexed_keys & left['sessions'] - left['rows']):,} rows of sessions left "
                         "are missing")
        return wrong


def utc_timestamp(naive_utc):
    return naive_utc.replace(tzinfo=dt.timezone.utc).timestamp()


def session_signer(store):
    """sign(payload, when) -> the string signing.dumps() would have made at `when` (epoch seconds).

    Same algorithm as django.core.signing (TimestampSigner, salted HMAC), with the HMAC key derived
    once instead of per call; Fill.generate() checks the result with SessionStore.decode()."""
    import hashlib
    import hmac

    from django.conf import settings
    from django.core import signing

    signer = signing.TimestampSigner(salt=store.key_salt)
    hasher = getattr(hashlib, signer.algorithm)
    key = hasher(f"{store.key_salt}signer{settings.SECRET_KEY}".encode()).digest()
    base = hmac.new(key, digestmod=hasher)

    def sign(payload, when):
        value = f"{payload}:{signing.b62_encode(int(when))}"
        mac = base.copy()
        mac.update(value.encode())
        return f"{value}:{signing.b64_encode(mac.digest()).decode()}"

    return sign


def zone_hour_user_ids(student_ids):
    """The students in ZONE_HOUR_ZONE: every ZONE_HOUR_EVERY-th by id (the fill and the child agree)."""
    return sorted(student_ids)[::ZONE_HOUR_EVERY]


def one_user_among(n, users, theirs_count):
    """bench_logout_user's store (db engine): n sessions, each with its ownership-index row, theirs_count
    of them the user "target"'s and the rest spread over `users` other users; what a previous fill left
    goes first. Returns the target's session keys."""
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from students.models import SessionOwner

    Session.objects.all().delete()
    SessionOwner.objects.all().delete()
    User.objects.all().delete()
    User.objects.bulk_create([User(username=f"u{i}") for i in range(users)], batch_size=5000)
    ids = list(User.objects.order_by("pk").values_list("pk", flat=True))
    target = User.objects.create(username="target")
    now = timezone.now()
    expire = now + dt.timedelta(days=14)
    store = SessionStore()
    owners = [target.pk] * theirs_count + [ids[i % len(ids)] for i in range(n - theirs_count)]
    for start in range(0, len(owners), 10_000):
        chunk = owners[start:start + 10_000]
        keys = [store._get_new_session_key() for _ in chunk]
        Session.objects.bulk_create(
            [Session(session_key=k, session_data=store.encode({"_auth_user_id": str(u)}), expire_date=expire)
             for k, u in zip(keys, chunk)])
        SessionOwner.objects.bulk_create(
            [SessionOwner(session_key=k, user_id=str(u), logged_in_at=now) for k, u in zip(keys, chunk)])
    return set(SessionOwner.objects.filter(user_id=str(target.pk)).values_list("session_key", flat=True))
