//! The invitation emails: templates in `templates/email/`, one per kind and language, as
//! text and HTML. Names and the account name are escaped in HTML.

use minijinja::{AutoEscape, Environment, context};

use crate::domain::InvitationEmail;

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/email/", $name)))),*]
    };
}

const TEMPLATES: [(&str, &str); 17] = templates![
    "layout.html",
    "en/new_user.txt",
    "en/new_user.html",
    "en/existing_user.txt",
    "en/existing_user.html",
    "de/new_user.txt",
    "de/new_user.html",
    "de/existing_user.txt",
    "de/existing_user.html",
    "zh/new_user.txt",
    "zh/new_user.html",
    "zh/existing_user.txt",
    "zh/existing_user.html",
    "ru/new_user.txt",
    "ru/new_user.html",
    "ru/existing_user.txt",
    "ru/existing_user.html",
];

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn load() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env })
    }

    /// Renders the email; `accept_link` carries the secret.
    pub fn render(&self, email: &InvitationEmail, accept_link: &str) -> Result<Rendered, String> {
        let (language, kind) = (email.language, email.kind.as_str());
        let ctx = context! {
            lang => language.code(),
            invitee_name => email.invitee_name,
            inviter_name => email.inviter_name,
            account_name => email.account_name,
            accept_link => accept_link,
            expires_at => email.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        };
        let text_template = self
            .env
            .get_template(&format!("{}/{kind}.txt", language.code()))
            .map_err(|e| e.to_string())?;
        let mut captured = text_template
            .render_captured(&ctx)
            .map_err(|e| e.to_string())?;
        let (subject, text) = captured
            .with_state_mut(|state| {
                Ok::<_, minijinja::Error>((
                    state.render_block("subject")?,
                    state.render_block("body")?,
                ))
            })
            .map_err(|e| e.to_string())?;
        let html = self
            .env
            .get_template(&format!("{}/{kind}.html", language.code()))
            .and_then(|template| template.render(&ctx))
            .map_err(|e| e.to_string())?;
        Ok(Rendered {
            subject: subject.trim().to_string(),
            text: text.trim_start().to_string(),
            html,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{InvitationKind, Language};

    fn email(kind: InvitationKind, language: Language) -> InvitationEmail {
        InvitationEmail {
            kind,
            to: "ada@example.com".into(),
            invitee_name: "Ada <script>".into(),
            language,
            account_name: "R&D".into(),
            inviter_name: "Alice".into(),
            expires_at: "2026-11-29T09:00:00Z".parse().unwrap(),
            secret: Some("s3cret".into()),
        }
    }

    #[test]
    fn every_kind_and_language_renders_with_link_account_inviter_and_expiry() {
        let templates = Templates::load().unwrap();
        let mut subjects = std::collections::HashSet::new();
        for language in Language::ALL {
            for kind in InvitationKind::ALL {
                let rendered = templates
                    .render(
                        &email(kind, language),
                        "https://x.example/accept?token=s3cret",
                    )
                    .unwrap();
                assert!(rendered.subject.contains("R&D"), "{}", rendered.subject);
                assert!(subjects.insert(rendered.subject.clone()), "subjects differ");
                for body in [&rendered.text, &rendered.html] {
                    assert!(body.contains("token=s3cret"));
                    assert!(body.contains("Alice"));
                    assert!(body.contains("2026-11-29 09:00 UTC"));
                }
                assert!(rendered.text.contains("Ada <script>"));
                assert!(rendered.html.contains("Ada &lt;script&gt;"));
                assert!(rendered.html.contains("R&amp;D"));
                assert!(!rendered.html.contains("<script>"));
            }
        }
    }
}
