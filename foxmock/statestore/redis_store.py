"""The shared store: counters and quota windows in Redis, each take one Lua script (atomic).

For ``--workers N`` and replicas behind a load balancer. The client connects lazily, on the
loop that first uses it (each forked worker has its own), and reconnects by itself after Redis
comes back; while it is away, a take raises `StateUnavailable`.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any
from urllib.parse import quote, unquote

from foxmock.statestore.base import (
    LIMITED,
    OK,
    Bucket,
    QuotaView,
    StateStore,
    StateUnavailable,
    Take,
    Taken,
    admit,
    view,
)

PREFIX = "foxmock:"

# KEYS: counter key or "", window key or "". ARGV: limit (-1: none), now, window (s),
# requests per minute (-1: none), tokens per minute (-1: none), tokens, counter TTL (ms), mode
# ("take" or "charge"). Returns {outcome, count, bucket...}: the window's buckets afterwards.
_SCRIPT = """
local ckey, qkey = KEYS[1], KEYS[2]
local limit, now, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm, tpm, tokens = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl, mode = tonumber(ARGV[7]), ARGV[8]
local count = 0
if ckey ~= '' then
  count = tonumber(redis.call('GET', ckey) or '0')
  if limit >= 0 and count >= limit then return {'used_up', count} end
end
local out = {'ok', 0}
if qkey ~= '' then
  local raw = redis.call('LRANGE', qkey, 0, -1)
  local start, drop, log = now - window, 0, {}
  local used_r, used_t = 0, 0
  for i, item in ipairs(raw) do
    local t, r, k = string.match(item, '(%S+) (%S+) (%S+)')
    t, r, k = tonumber(t), tonumber(r), tonumber(k)
    if t <= start and drop == i - 1 then
      drop = i
    else
      log[#log + 1] = {t, r, k}
      used_r, used_t = used_r + r, used_t + k
    end
  end
  if drop > 0 then redis.call('LTRIM', qkey, drop, -1) end
  if used_t < 0 then used_t = 0 end
  local refused = false
  if mode == 'take' then
    if (rpm >= 0 and used_r + 1 > rpm) or (tpm >= 0 and used_t + tokens > tpm) then
      refused = true
      out[1] = 'limited'
    end
  end
  if not refused and (mode == 'take' or tokens ~= 0) then
    local r = 1
    if mode == 'charge' then r = 0 end
    local last = log[#log]
    if last ~= nil and now - last[1] < window / 1000 then
      last[1], last[2], last[3] = math.max(last[1], now), last[2] + r, last[3] + tokens
      redis.call('LSET', qkey, -1, string.format('%.17g %d %d', last[1], last[2], last[3]))
    else
      log[#log + 1] = {now, r, tokens}
      redis.call('RPUSH', qkey, string.format('%.17g %d %d', now, r, tokens))
    end
    redis.call('PEXPIRE', qkey, math.ceil(window * 1000) + 1000)
  end
  for _, b in ipairs(log) do out[#out + 1] = string.format('%.17g %d %d', b[1], b[2], b[3]) end
  if refused then
    if ckey ~= '' then out[2] = count end
    return out
  end
end
if ckey ~= '' and mode == 'take' then
  count = redis.call('INCR', ckey)
  redis.call('PEXPIRE', ckey, ttl)
end
out[2] = count
return out
"""


def _buckets(items: list[Any]) -> list[Bucket]:
    buckets = []
    for item in items:
        t, r, k = str(item).split()
        buckets.append([float(t), float(r), float(k)])
    return buckets


class RedisStore(StateStore):
    """Counters and windows under ``foxmock:`` keys of one Redis database."""

    def __init__(self, url: str, ttl: float = 86400.0, timeout: float = 1.0) -> None:
        self.url = url
        self.ttl, self.timeout = ttl, timeout
        self._client: Any = None
        self._script: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _connect(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio  # only servers with --state redis:// pay for the import

            self._client = redis.asyncio.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                decode_responses=True,
            )
            self._script = self._client.register_script(_SCRIPT)
            self._loop = loop
        return self._client

    async def _run(self, keys: list[str], args: list[Any]) -> list[Any]:
        import redis.exceptions

        self._connect()
        try:
            result: list[Any] = await self._script(keys=keys, args=args)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StateUnavailable(f"{self.shown()}: {exc}") from None
        return result

    def shown(self) -> str:
        """The URL without its password."""
        if "@" in self.url:
            scheme, _, rest = self.url.partition("://")
            return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return self.url

    def _args(self, take: Take, now: float, tokens: int, mode: str) -> list[Any]:
        def num(value: int | None) -> int:
            return -1 if value is None else value

        return [
            num(take.limit),
            repr(now),
            repr(take.window),
            num(take.requests_per_minute),
            num(take.tokens_per_minute),
            tokens,
            max(int(self.ttl * 1000), 1),
            mode,
        ]

    async def take(self, take: Take, now: float) -> Taken:
        keys = [
            PREFIX + (take.counter or "") if take.counter else "",
            PREFIX + take.quota if take.quota else "",
        ]
        result = await self._run(keys, self._args(take, now, take.tokens, "take"))
        outcome, count = str(result[0]), int(result[1])
        if take.quota is None or outcome not in (OK, LIMITED):
            return Taken(outcome, count)
        log = _buckets(result[2:])
        if outcome == LIMITED:  # the same rules on the same window say why, and until when
            return Taken(LIMITED, count, admit(log, take, now))
        return Taken(OK, count, view(log, take, now))

    async def charge(self, take: Take, now: float, tokens: int) -> QuotaView:
        assert take.quota is not None
        result = await self._run(["", PREFIX + take.quota], self._args(take, now, tokens, "charge"))
        return view(_buckets(result[2:]), take, now)

    async def _keys(self, pattern: str, most: int) -> list[str]:
        import redis.exceptions

        client = self._connect()
        found: list[str] = []
        try:
            async for key in client.scan_iter(match=pattern, count=500):
                found.append(str(key))
                if len(found) >= most:
                    break
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StateUnavailable(f"{self.shown()}: {exc}") from None
        return found

    async def entries(self, most: int = 1000) -> list[dict[str, Any]]:
        import redis.exceptions

        client = self._connect()
        out = []
        for key in await self._keys(PREFIX + "*", most):
            kind, name, scope = key[len(PREFIX) :].split(":", 2)
            shown = {"name": unquote(name), "scope": unquote(scope)}
            try:
                if kind == "seq":
                    count = int(await client.get(key) or 0)
                    out.append({"kind": "sequence", **shown, "count": count})
                else:
                    log = _buckets(await client.lrange(key, 0, -1))
                    requests = sum(int(b[1]) for b in log)
                    tokens = sum(int(b[2]) for b in log)
                    out.append({"kind": "quota", **shown, "requests": requests, "tokens": tokens})
            except (redis.exceptions.RedisError, OSError) as exc:
                raise StateUnavailable(f"{self.shown()}: {exc}") from None
        return out

    async def clear(self, scenario: str | None = None) -> int:
        import redis.exceptions

        if scenario is None:
            patterns = [PREFIX + "*"]
        else:
            name = quote(scenario, safe="")
            patterns = [f"{PREFIX}seq:{name}:*", f"{PREFIX}quota:{name}:*"]
        client = self._connect()
        dropped = 0
        for pattern in patterns:
            keys = await self._keys(pattern, math.inf)  # type: ignore[arg-type]
            for start in range(0, len(keys), 500):
                try:
                    dropped += int(await client.unlink(*keys[start : start + 500]))
                except (redis.exceptions.RedisError, OSError) as exc:
                    raise StateUnavailable(f"{self.shown()}: {exc}") from None
        return dropped

    async def close(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
