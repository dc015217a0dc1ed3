use chrono::{DateTime, Utc};
use sea_orm::{EntityTrait, PaginatorTrait};
use usermgmt::{
    domain::{DisplayName, Email},
    store::{self, Store, entity::account},
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
    let account_name = DisplayName::parse("Default account").unwrap();
    let (first_store, second_store) = (Store::new(first.clone()), Store::new(second.clone()));
    let create = |store: &Store| {
        let store = store.clone();
        let (account_name, email, name) = (account_name.clone(), email.clone(), name.clone());
        async move {
            store
                .create_first_account(&account_name, &email, &name, now)
                .await
        }
    };

    let (a, b) = tokio::join!(create(&first_store), create(&second_store));
    let created = [a.unwrap(), b.unwrap()];
    assert_eq!(created.iter().filter(|c| c.is_some()).count(), 1);
    assert_eq!(account::Entity::find().count(&first).await.unwrap(), 1);

    let again = create(&second_store).await.unwrap();
    assert!(again.is_none(), "a later start creates nothing");
}
