//! The OpenClaw protocol version of a connection, negotiated once at `connect`
//! and fixed for the connection's life.
//!
//! Invariants: a client's `[minProtocol, maxProtocol]` range is accepted when it
//! meets `{3, 4}`, and the connection speaks the highest version both sides
//! have (4..4 and 3..4 → 4, 3..3 → 3); everything that differs between the
//! versions (hello-ok fields, error codes, `chat` event fields, numbering of
//! targeted events, device-less scope policy) is decided from this value in the
//! OpenClaw dialect only — services never see a version.

/// An OpenClaw Gateway protocol version this edge speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    #[default]
    V3,
    V4,
}

impl Protocol {
    /// The oldest and newest versions spoken.
    pub const OLDEST: Protocol = Protocol::V3;
    pub const NEWEST: Protocol = Protocol::V4;

    /// The version's number, as `hello-ok.protocol` carries it.
    pub fn number(self) -> i64 {
        match self {
            Self::V3 => 3,
            Self::V4 => 4,
        }
    }

    /// The highest version within `[min, max]`, if any.
    pub fn negotiate(min: i64, max: i64) -> Option<Protocol> {
        [Self::V4, Self::V3]
            .into_iter()
            .find(|v| min <= v.number() && v.number() <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::Protocol;

    #[test]
    fn the_highest_common_version_wins() {
        assert_eq!(Protocol::negotiate(4, 4), Some(Protocol::V4));
        assert_eq!(Protocol::negotiate(3, 4), Some(Protocol::V4));
        assert_eq!(Protocol::negotiate(3, 3), Some(Protocol::V3));
        assert_eq!(Protocol::negotiate(1, 9), Some(Protocol::V4));
        assert_eq!(Protocol::negotiate(1, 2), None);
        assert_eq!(Protocol::negotiate(5, 5), None);
        assert_eq!(Protocol::negotiate(4, 3), None);
    }
}
