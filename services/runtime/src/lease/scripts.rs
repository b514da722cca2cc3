//! The Lua scripts of the run leases. Each touches only keys of one user (one
//! hash tag), so each is atomic and Redis Cluster compatible.

use std::sync::LazyLock;

use redis::Script;

/// Admits a run. KEYS: session lease, run record. ARGV: run id, token, owner,
/// lease ms, record ttl ms, info bytes, session key.
/// Returns `{'existing', state, owner, info}`, `{'busy', active run id}` or
/// `{'granted'}`.
pub(super) static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rec = redis.call('HMGET', KEYS[2], 'state', 'owner', 'info')
if rec[1] then return {'existing', rec[1], rec[2] or '', rec[3] or ''} end
local holder = redis.call('GET', KEYS[1])
if holder then
  local sep = string.find(holder, ':', 1, true)
  if sep then return {'busy', string.sub(holder, sep + 1)} end
  return {'busy', ''}
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[1], 'PX', ARGV[4])
redis.call('HSET', KEYS[2], 'state', 'running', 'owner', ARGV[3], 'token', ARGV[2],
  'session', ARGV[7], 'info', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {'granted'}
",
    )
});

/// Extends a lease its holder still holds. KEYS: session lease, run record.
/// ARGV: `<token>:<run id>`, lease ms, record ttl ms. Returns 1 when renewed,
/// 0 when the lease is no longer this run's.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
",
    )
});

/// Records a run's end and frees its session if the lease is still the run's.
/// KEYS: session lease, run record. ARGV: `<token>:<run id>`, info bytes,
/// record ttl ms.
pub(super) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HSET', KEYS[2], 'state', 'ended', 'info', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
",
    )
});

/// Forgets a run admitted but never started. KEYS: session lease, run record.
/// ARGV: `<token>:<run id>`, token.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[2], 'token') == ARGV[2] then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
",
    )
});

/// Claims the finalization of a run whose lease is gone while its record still
/// says running. KEYS: session lease, run record, end claim. ARGV: run id,
/// claimer, claim ttl ms. Returns `{'gone'}` (ended or forgotten), `{'alive'}`
/// (its lease is held), `{'taken'}` (someone else claimed it) or
/// `{'claimed', token, owner, info}`.
pub(super) static CLAIM_LOST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rec = redis.call('HMGET', KEYS[2], 'state', 'token', 'owner', 'info')
if rec[1] ~= 'running' then return {'gone'} end
local token = rec[2] or ''
if redis.call('GET', KEYS[1]) == token .. ':' .. ARGV[1] then return {'alive'} end
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'taken'} end
return {'claimed', token, rec[3] or '', rec[4] or ''}
",
    )
});
