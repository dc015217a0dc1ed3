//! BatchInviteUsers: up to 100 invitations in one call, each carried out as InviteUser
//! would carry it out on its own.

use std::collections::HashSet;

use futures_util::{StreamExt, stream};
use uuid::Uuid;

use super::{Caller, Error, Invitation, Invite, Presented, UserService};
use crate::domain::administrators::check_administrator;

/// The most rows one batch may hold.
pub const MAX_BATCH_ROWS: usize = 100;

/// Refuses a batch of no rows or of more than [`MAX_BATCH_ROWS`]: checked before its rows
/// are read, and again by the service.
pub fn check_batch_size(rows: usize) -> Result<(), Error> {
    if rows == 0 || rows > MAX_BATCH_ROWS {
        return Err(Error::invalid(
            "requests",
            format!("must hold 1 to {MAX_BATCH_ROWS} invitations"),
        ));
    }
    Ok(())
}

/// Rows whose transactions run side by side. An account's invitations take turns at the
/// end of their transactions anyway (the account's change counter), so more would only
/// hold more of the pool's connections.
const ROWS_AT_ONCE: usize = 3;

impl UserService {
    /// Carries out each row as [`UserService::invite`] would and answers in the rows'
    /// order. A row that failed to parse keeps its error. A caller who may not invite into
    /// the account is refused as a whole.
    #[tracing::instrument(skip_all, fields(%account_id, rows = rows.len()), err(level = "info"))]
    pub async fn batch_invite(
        &self,
        caller: &Caller,
        account_id: Uuid,
        rows: Vec<Result<Invite, Error>>,
    ) -> Result<Vec<Result<Invitation, Error>>, Error> {
        check_batch_size(rows.len())?;
        let presented = Presented::Caller(caller.clone());
        let (_, role) = self.reader_in(&presented, account_id).await?;
        check_administrator(role, "invite users")?;
        // The first row of each email and of each `request_id` runs in the first wave; a
        // repeat runs after it, so it meets what the first one did, as a second InviteUser
        // call would.
        let mut emails = HashSet::new();
        let mut request_ids = HashSet::new();
        let (first, repeats): (Vec<_>, Vec<_>) =
            rows.into_iter()
                .enumerate()
                .partition(|(_, row)| match row {
                    Ok(invite) => {
                        let new_email = emails.insert(invite.email.clone());
                        let new_request = invite
                            .request_id
                            .as_ref()
                            .is_none_or(|id| request_ids.insert(id.clone()));
                        new_email && new_request
                    }
                    Err(_) => true,
                });
        let mut answers: Vec<(usize, Result<Invitation, Error>)> = Vec::new();
        for wave in [first, repeats] {
            let presented = &presented;
            let done: Vec<_> = stream::iter(wave)
                .map(|(index, row)| async move {
                    let answer = match row {
                        Ok(invite) => self.invite(presented, invite).await,
                        Err(error) => Err(error),
                    };
                    (index, answer)
                })
                .buffer_unordered(ROWS_AT_ONCE)
                .collect()
                .await;
            answers.extend(done);
        }
        answers.sort_by_key(|(index, _)| *index);
        Ok(answers.into_iter().map(|(_, answer)| answer).collect())
    }
}
