//! Durations are bounded when the settings are read, so what the service computes from them
//! stays within the calendar.

use chrono::{DateTime, TimeDelta, Utc};
use usermgmt::{config::Settings, service::Error};

use crate::helpers::fresh_database;

#[tokio::test]
async fn an_invitation_expiry_past_the_last_date_is_an_internal_error_not_a_panic() {
    let database = fresh_database().await;
    let settings = Settings::for_database(database.url());
    let service = usermgmt::app::service(&settings).await.unwrap();

    let now = DateTime::parse_from_rfc3339("2026-11-28T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        service.invitation_expiry(now, None).unwrap(),
        now + TimeDelta::hours(24)
    );
    assert!(matches!(
        service.invitation_expiry(DateTime::<Utc>::MAX_UTC, Some(TimeDelta::hours(1))),
        Err(Error::Internal(_))
    ));
}
