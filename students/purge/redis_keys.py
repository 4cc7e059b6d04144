"""Session keys in Redis, through the client of Django's RedisCache (redis-py): listing them by
pattern (SCAN MATCH) and removing them (UNLINK, pipelined). Django's cache API can do neither."""
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import default_key_func
from django.core.cache.backends.redis import RedisCache

from students.engines import UnsupportedEngine

UNLINK_CHUNK = 1_000
# A Django session key (get_random_string(32) of lowercase letters and digits), as a glob.
SESSION_KEY_GLOB = "[a-z0-9]" * 32  # keys per UNLINK command; a batch's chunks go in one round trip


def session_cache():
    return caches[settings.SESSION_CACHE_ALIAS]


def listable_cache(engine):
    """The session cache when its session keys can be listed; else UnsupportedEngine, saying why."""
    alias = settings.SESSION_CACHE_ALIAS
    cache = caches[alias]
    backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
    if not isinstance(cache, RedisCache):
        raise UnsupportedEngine(
            f"session engine {engine.path!r} keeps sessions in cache {alias!r} ({backend}), which cannot "
            "list its keys, so they cannot be purged; use Django's RedisCache or the db/cached_db engine"
        )
    if cache.key_func is not default_key_func:
        raise UnsupportedEngine(f"cache {alias!r} uses a custom KEY_FUNCTION; its session keys cannot be found")
    return cache


def client_of(cache):
    """redis-py's client for the primary (Django's RedisCache writes to its first server)."""
    return cache._cache.get_client(write=True)


def glob_escape(text):
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def scan_batches(client, pattern, batch_size):
    """Lists of at most batch_size raw keys (bytes) matching the glob `pattern`, never all at once.
    A key deleted after it was listed is fine; SCAN still returns each key present throughout."""
    batch, cursor = [], 0
    while True:
        cursor, keys = client.scan(cursor, match=pattern, count=UNLINK_CHUNK)
        batch += keys
        while len(batch) >= batch_size:  # one SCAN may return more than a batch
            yield batch[:batch_size]
            batch = batch[batch_size:]
        if cursor == 0:
            if batch:
                yield batch
            return


def unlink(client, keys):
    """Remove these raw keys (UNLINK: the memory is freed off the main thread) in chunks sent in
    one pipeline; return how many existed."""
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(keys), UNLINK_CHUNK):
        pipe.unlink(*keys[start:start + UNLINK_CHUNK])
    return sum(pipe.execute())


def forget(cache, keys):
    """Remove these cache keys (unmade: as given to the cache API) from any Django cache: pipelined
    UNLINK on Django's RedisCache, delete_many elsewhere."""
    if isinstance(cache, RedisCache):
        unlink(client_of(cache), [cache.make_key(key) for key in keys])
    elif keys:
        cache.delete_many(keys)
