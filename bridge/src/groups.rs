//! Group changes inside a batch: one small function per `op` of
//! `u/{me}/group` (or its HTTP twin), each checking the rules, writing the
//! change, and saying which inboxes get which `group` event.
//!
//! # Invariant
//! - Only a member changes a group; only an admin adds, removes, promotes,
//!   demotes, renames or sets the timer.
//! - A group with members always has an admin: when the last one leaves
//!   or is removed, the oldest remaining member is promoted, `by` the
//!   server (`"by": null`).
//! - A group never has more than [`GroupRules::max_members`] members.
//! - Every change that happened is announced to every member after it,
//!   plus whoever left or was removed (their last event of the group), and
//!   kept in the group's history of changes. A change that changes nothing
//!   (adding a member twice, removing a non-member) announces nothing.
//!
//! Windows open and close at the batch's newest message id: the batch
//! applies group changes after its sends ([`crate::batch::priority_order`]),
//! so a message stored in the same batch as a removal reaches the removed
//! member and stays in their window, and one stored with an addition does
//! neither.

use protocol::groups::{Group, GroupChange, GroupEvent, GroupId, GroupRequest};
use protocol::messages::{Event, Rejection};
use protocol::{ErrorCode, UserName};
use store::groups::{Created, Member, Settings};
use store::{StoreError, Tx};

/// The limits group changes are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRules {
    /// Most members of one group (`groups.max_members`).
    pub max_members: usize,
}

impl Default for GroupRules {
    fn default() -> GroupRules {
        GroupRules {
            max_members: protocol::groups::DEFAULT_MAX_MEMBERS,
        }
    }
}

/// What a group request came to.
pub(crate) enum Applied {
    /// Applied (or nothing to change): the `group` events to append, to
    /// whom, and the group as it is now.
    Done {
        events: Vec<(String, Event)>,
        group: Group,
    },
    /// Refused; nothing was written.
    Refused(Rejection),
}

/// One group request being applied.
pub(crate) struct Change<'a, 't> {
    tx: &'a mut Tx<'t>,
    /// Who asked.
    user: &'a UserName,
    rules: GroupRules,
    now: i64,
    /// The batch's newest message id: where windows open and close.
    newest: i64,
    /// The client id of a `create`, for its refusals.
    client_id: Option<String>,
    events: Vec<(String, Event)>,
}

/// Applies `op` from `user`; see the module docs.
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    user: &UserName,
    op: &GroupRequest,
    rules: GroupRules,
    now: i64,
    newest: i64,
) -> Result<Applied, StoreError> {
    let mut change = Change {
        tx,
        user,
        rules,
        now,
        newest,
        client_id: op.client_id().map(str::to_owned),
        events: Vec::new(),
    };
    let group = match op {
        GroupRequest::Create { id, name, members } => change.create(id, name, members)?,
        GroupRequest::Add { group, user } => change.add(*group, user)?,
        GroupRequest::Remove { group, user } if user == change.user.as_str() => {
            change.leave(*group)?
        }
        GroupRequest::Remove { group, user } => change.remove(*group, user)?,
        GroupRequest::Leave { group } => change.leave(*group)?,
        GroupRequest::Promote { group, user } => change.set_admin(*group, user, true)?,
        GroupRequest::Demote { group, user } => change.set_admin(*group, user, false)?,
        GroupRequest::Rename { group, name } => change.settings(*group, |s| s.name = name.clone())?,
        GroupRequest::Timer { group, seconds } => {
            change.settings(*group, |s| s.timer_seconds = *seconds)?
        }
    };
    Ok(match group {
        Ok(group) => {
            let group = change
                .tx
                .describe_groups(&[group])?
                .pop()
                .ok_or_else(|| StoreError::Corrupt(format!("group {group} went missing")))?;
            Applied::Done {
                events: change.events,
                group,
            }
        }
        Err(rejection) => Applied::Refused(rejection),
    })
}

/// The group changed (or left as it was), or why not.
type Outcome = Result<Result<GroupId, Rejection>, StoreError>;

impl Change<'_, '_> {
    fn rejection(&self, code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            client_id: self.client_id.clone(),
            code,
            message: message.into(),
        }
    }

    fn refuse(&self, code: ErrorCode, message: impl Into<String>) -> Outcome {
        Ok(Err(self.rejection(code, message)))
    }

    fn not_a_member(&self, group: GroupId) -> Rejection {
        // A group that does not exist gets the same answer, so ids cannot
        // be probed.
        self.rejection(ErrorCode::NotAMember, format!("you are not in group {group}"))
    }

    fn full(&self) -> Outcome {
        self.refuse(
            ErrorCode::GroupFull,
            format!("a group has at most {} members", self.rules.max_members),
        )
    }

    /// The group's current members (oldest first) if the caller is one of
    /// them; with `admin`, only if the caller is an admin.
    fn members(&mut self, group: GroupId, admin: bool) -> Result<Result<Vec<Member>, Rejection>, StoreError> {
        let members = self.tx.members_of(&[group])?.remove(&group).unwrap_or_default();
        let me = members.iter().find(|m| m.user == self.user.as_str());
        Ok(match me {
            None => Err(self.not_a_member(group)),
            Some(me) if admin && !me.admin => Err(self.rejection(
                ErrorCode::NotAdmin,
                format!("only the admins of group {group} may do this"),
            )),
            Some(_) => Ok(members),
        })
    }

    /// Names in `names` that are not registered users.
    fn unknown(&mut self, names: &[&str]) -> Result<Option<String>, StoreError> {
        let existing = self.tx.existing_users(names)?;
        Ok(names.iter().find(|n| !existing.contains(**n)).map(|n| n.to_string()))
    }

    /// A `group` event of this change, now.
    fn event(
        &self,
        group: GroupId,
        change: GroupChange,
        user: Option<&str>,
        by: Option<&str>,
        name: &str,
    ) -> GroupEvent {
        GroupEvent {
            group,
            change,
            user: user.map(str::to_owned),
            by: by.map(str::to_owned),
            name: name.to_owned(),
            at: self.now,
            members: None,
            client_id: None,
            seconds: None,
        }
    }

    /// Announces `event` to `to` and keeps it in the group's history.
    fn announce<'n>(
        &mut self,
        event: GroupEvent,
        to: impl IntoIterator<Item = &'n str>,
    ) -> Result<(), StoreError> {
        self.tx.record_group_change(&event, self.newest)?;
        for member in to {
            self.events.push((member.to_owned(), Event::Group(event.clone())));
        }
        Ok(())
    }

    fn name_of(&mut self, group: GroupId) -> Result<String, StoreError> {
        Ok(self.tx.group_settings(group)?.map(|s| s.name).unwrap_or_default())
    }

    fn create(&mut self, client_id: &str, name: &str, members: &[String]) -> Outcome {
        let me = self.user.as_str();
        let mut everyone: Vec<&str> = vec![me];
        for member in members {
            if !everyone.contains(&member.as_str()) {
                everyone.push(member);
            }
        }
        // The size first: a payload naming thousands of users is refused
        // before any of them is looked up.
        if everyone.len() > self.rules.max_members {
            return self.full();
        }
        if let Some(unknown) = self.unknown(&everyone[1..])? {
            return self.refuse(ErrorCode::UnknownRecipient, format!("no user {unknown:?}"));
        }
        let group = match self.tx.create_group(me, client_id, name, self.now)? {
            // A resend: the group as first created, announced then.
            Created::Existing(group) => return Ok(Ok(group)),
            Created::New(group) => group,
        };
        let windows: Vec<(&str, bool)> = everyone.iter().map(|u| (*u, *u == me)).collect();
        self.tx.open_windows(group, &windows, self.now, self.newest)?;
        let names: Vec<String> = everyone.iter().map(|u| u.to_string()).collect();
        let mut event = self.event(group, GroupChange::Created, None, Some(me), name);
        event.members = Some(names);
        event.client_id = Some(client_id.to_owned());
        self.announce(event, everyone.iter().copied())?;
        Ok(Ok(group))
    }

    fn add(&mut self, group: GroupId, user: &str) -> Outcome {
        let members = match self.members(group, true)? {
            Ok(members) => members,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if members.iter().any(|m| m.user == user) {
            return Ok(Ok(group));
        }
        if let Some(unknown) = self.unknown(&[user])? {
            return self.refuse(ErrorCode::UnknownRecipient, format!("no user {unknown:?}"));
        }
        if members.len() >= self.rules.max_members {
            return self.full();
        }
        self.tx.open_windows(group, &[(user, false)], self.now, self.newest)?;
        let name = self.name_of(group)?;
        let to = members.iter().map(|m| m.user.as_str()).chain([user]);
        let by = self.user.to_string();
        let event = self.event(group, GroupChange::Added, Some(user), Some(&by), &name);
        self.announce(event, to)?;
        Ok(Ok(group))
    }

    fn remove(&mut self, group: GroupId, user: &str) -> Outcome {
        let members = match self.members(group, true)? {
            Ok(members) => members,
            Err(refusal) => return Ok(Err(refusal)),
        };
        self.close(group, members, user, GroupChange::Removed)
    }

    fn leave(&mut self, group: GroupId) -> Outcome {
        let members = match self.members(group, false)? {
            Ok(members) => members,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let me = self.user.to_string();
        self.close(group, members, &me, GroupChange::Left)
    }

    /// Closes `user`'s window, announces it to the members and to them,
    /// and promotes the oldest member if no admin is left.
    fn close(&mut self, group: GroupId, members: Vec<Member>, user: &str, change: GroupChange) -> Outcome {
        if !members.iter().any(|m| m.user == user) {
            return Ok(Ok(group));
        }
        self.tx.close_window(group, user, self.now, self.newest)?;
        let name = self.name_of(group)?;
        let remaining: Vec<&Member> = members.iter().filter(|m| m.user != user).collect();
        let to = remaining.iter().map(|m| m.user.as_str()).chain([user]);
        let by = self.user.to_string();
        let event = self.event(group, change, Some(user), Some(&by), &name);
        self.announce(event, to)?;
        if let (false, Some(oldest)) = (remaining.iter().any(|m| m.admin), remaining.first()) {
            self.tx.set_admin(group, &oldest.user, true)?;
            let to = remaining.iter().map(|m| m.user.as_str());
            let event = self.event(group, GroupChange::Promoted, Some(&oldest.user), None, &name);
            self.announce(event, to)?;
        }
        Ok(Ok(group))
    }

    fn set_admin(&mut self, group: GroupId, user: &str, admin: bool) -> Outcome {
        let members = match self.members(group, true)? {
            Ok(members) => members,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let Some(target) = members.iter().find(|m| m.user == user) else {
            return self.refuse(ErrorCode::NotAMember, format!("{user} is not in group {group}"));
        };
        if target.admin == admin {
            return Ok(Ok(group));
        }
        if !admin && members.iter().filter(|m| m.admin).count() == 1 {
            return self.refuse(
                ErrorCode::BadRequest,
                "a group keeps at least one admin: promote another member first",
            );
        }
        self.tx.set_admin(group, user, admin)?;
        let name = self.name_of(group)?;
        let change = if admin { GroupChange::Promoted } else { GroupChange::Demoted };
        let to = members.iter().map(|m| m.user.as_str());
        let by = self.user.to_string();
        let event = self.event(group, change, Some(user), Some(&by), &name);
        self.announce(event, to)?;
        Ok(Ok(group))
    }

    /// Rename or timer: `edit` the settings; announced if they changed.
    fn settings(&mut self, group: GroupId, edit: impl FnOnce(&mut Settings)) -> Outcome {
        let members = match self.members(group, true)? {
            Ok(members) => members,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let Some(before) = self.tx.group_settings(group)? else {
            return Ok(Err(self.not_a_member(group)));
        };
        let mut after = before.clone();
        edit(&mut after);
        if after == before {
            return Ok(Ok(group));
        }
        self.tx.set_group_settings(group, &after)?;
        let (change, seconds) = if after.name != before.name {
            (GroupChange::Renamed, None)
        } else {
            (GroupChange::Timer, Some(after.timer_seconds))
        };
        let to = members.iter().map(|m| m.user.as_str());
        let by = self.user.to_string();
        let mut event = self.event(group, change, None, Some(&by), &after.name);
        event.seconds = seconds;
        self.announce(event, to)?;
        Ok(Ok(group))
    }
}
