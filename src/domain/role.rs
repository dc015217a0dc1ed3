use std::cmp::Ordering;

/// A member's IAM/CDN role. Ordered by power: `Administrators` is the greatest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Administrators,
    Engineers,
    PurgeAndPrefetchApiWeb,
    PurgeAndPrefetchApi,
    Users,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Administrators,
        Role::Engineers,
        Role::PurgeAndPrefetchApiWeb,
        Role::PurgeAndPrefetchApi,
        Role::Users,
    ];

    /// The provider's role id, as stored and as sent on the wire.
    pub fn id(self) -> i32 {
        match self {
            Role::Administrators => 1,
            Role::Engineers => 5,
            Role::PurgeAndPrefetchApiWeb => 3009,
            Role::PurgeAndPrefetchApi => 3022,
            Role::Users => 2,
        }
    }

    pub fn from_id(id: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.id() == id)
    }

    fn power(self) -> u8 {
        match self {
            Role::Administrators => 5,
            Role::Engineers => 4,
            Role::PurgeAndPrefetchApiWeb => 3,
            Role::PurgeAndPrefetchApi => 2,
            Role::Users => 1,
        }
    }

    /// The role's name in kebab case, as the command line takes it.
    pub fn slug(self) -> &'static str {
        match self {
            Role::Administrators => "administrators",
            Role::Engineers => "engineers",
            Role::PurgeAndPrefetchApiWeb => "purge-and-prefetch-api-web",
            Role::PurgeAndPrefetchApi => "purge-and-prefetch-api",
            Role::Users => "users",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.slug() == slug)
    }

    pub fn is_administrator(self) -> bool {
        self == Role::Administrators
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> Ordering {
        self.power().cmp(&other.power())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power_not_by_id() {
        let mut shuffled = vec![
            Role::Users,
            Role::Administrators,
            Role::PurgeAndPrefetchApi,
            Role::Engineers,
            Role::PurgeAndPrefetchApiWeb,
        ];
        shuffled.sort();
        shuffled.reverse();
        assert_eq!(shuffled, Role::ALL.to_vec());
        assert_eq!(Role::Engineers.min(Role::Administrators), Role::Engineers);
    }

    #[test]
    fn ids_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_id(role.id()), Some(role));
        }
        assert_eq!(Role::from_id(0), None);
        for role in Role::ALL {
            assert_eq!(Role::from_slug(role.slug()), Some(role));
        }
    }
}
