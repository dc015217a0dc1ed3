use chrono::{DateTime, Utc};
use sea_orm::{EntityTrait, PaginatorTrait};
use usermgmt::{
    domain::{DisplayName, Email},
    store::{self, entity::account},
};

use crate::helpers::fresh_database;

#[tokio::test]
async fn replicas_starting_together_on_an_empty_database_create_one_account() {
    let database = fresh_database().await;
    // Two pools, as two replicas would have.
    let first = store::connect(database.url()).await.unwrap();
    let second = store::connect(database.url()).await.unwrap();
    store::migrate(&first).await.unwrap();
    let email = Email::parse("admin@example.com").unwrap();
    let name = DisplayName::parse("admin").unwrap();
    let now: DateTime<Utc> = "2026-11-28T09:00:00Z".parse().unwrap();
    let create =
        |db| store::accounts::create_first_with_admin(db, "Default account", &email, &name, now);

    let (a, b) = tokio::join!(create(&first), create(&second));
    let created = [a.unwrap(), b.unwrap()];
    assert_eq!(created.iter().filter(|c| c.is_some()).count(), 1);
    assert_eq!(account::Entity::find().count(&first).await.unwrap(), 1);

    let again = create(&second).await.unwrap();
    assert!(again.is_none(), "a later start creates nothing");
}
