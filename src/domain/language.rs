use serde::{Deserialize, Serialize};

/// The user's interface language and the language of every email sent to them. Serialised
/// as its ISO 639-1 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    De,
    Zh,
    Ru,
}

impl Language {
    pub const ALL: [Language; 4] = [Language::En, Language::De, Language::Zh, Language::Ru];

    /// The ISO 639-1 code, as stored.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Zh => "zh",
            Language::Ru => "ru",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|language| language.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for language in Language::ALL {
            assert_eq!(Language::from_code(language.code()), Some(language));
        }
        assert_eq!(Language::from_code("fr"), None);
    }
}
