//! Groups through the client SDK against a real server: what an app built
//! on `client::Client` sees when it creates a group, writes to it, and
//! changes who is in it.

mod common;

use client::{AppEvent, ClientError};
use common::chat::App;
use common::{eventually, Server};
use protocol::groups::{GroupChange, GroupEvent, GroupId, GroupRequest};
use protocol::messages::ReceiptStatus;
use protocol::ErrorCode;
use std::time::Duration;
use store::on_both_backends;

/// Waits for `app`'s group event `change` (about `user`, if given).
async fn group_event(app: &mut App, change: GroupChange, user: Option<&str>) -> GroupEvent {
    app.wait_for(&format!("group event {change:?} {user:?}"), |e| match e {
        AppEvent::Group(g) if g.change == change && (user.is_none() || g.user.as_deref() == user) => {
            Some(g.clone())
        }
        _ => None,
    })
    .await
}

/// Bodies of the group messages `app` has shown, in order.
fn group_bodies(app: &App, group: GroupId) -> Vec<String> {
    app.messages()
        .into_iter()
        .filter(|m| m.group == Some(group))
        .map(|m| format!("{}: {}", m.from, m.body))
        .collect()
}

on_both_backends! {
    async fn a_group_created_from_the_sdk_gets_every_message_to_every_other_member_once_in_order(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let mut apps = Vec::new();
        for name in ["alice", "bob", "carol"] {
            let token = server.register(name);
            apps.push(App::connect(&server, name, &token, "phone", dir.path()).await);
        }
        let [alice, bob, carol] = &mut apps[..] else { unreachable!() };

        let request = alice.client.create_group("  Lunch ", &["bob", "carol"]).await.unwrap();
        let created = group_event(alice, GroupChange::Created, None).await;
        assert_eq!(created.client_id.as_deref(), Some(request.as_str()), "the creator's device learns which request it was");
        assert_eq!(created.name, "Lunch", "the name is trimmed");
        assert_eq!(created.members.as_deref(), Some(&["alice".to_owned(), "bob".into(), "carol".into()][..]));
        let group = created.group;
        for member in [&mut *bob, &mut *carol] {
            assert_eq!(group_event(member, GroupChange::Created, None).await.group, group);
        }

        let mut ids = Vec::new();
        for body in ["one", "two", "three"] {
            ids.push(alice.client.send_to_group(group, body).await.unwrap());
        }
        let reply = bob.client.send_to_group(group, "from bob").await.unwrap();
        let mut stored = Vec::new();
        for id in &ids {
            stored.push(alice.sent(id).await);
        }
        bob.sent(&reply).await;
        assert!(stored.windows(2).all(|w| w[0] < w[1]), "stored in the order sent: {stored:?}");

        carol.message_from("alice", "three").await;
        carol.message_from("bob", "from bob").await;
        bob.message_from("alice", "three").await;
        alice.message_from("bob", "from bob").await;
        for app in [&mut *alice, &mut *bob, &mut *carol] {
            app.settle(Duration::from_millis(500)).await;
        }
        let from_alice = |app: &App| -> Vec<String> {
            group_bodies(app, group).into_iter().filter(|b| b.starts_with("alice:")).collect()
        };
        assert_eq!(from_alice(bob), ["alice: one", "alice: two", "alice: three"]);
        assert_eq!(from_alice(carol), ["alice: one", "alice: two", "alice: three"]);
        assert_eq!(group_bodies(carol, group).len(), 4, "carol got each message once: {:?}", group_bodies(carol, group));
        assert!(from_alice(alice).is_empty(), "a sender gets her ✓, never her own message");
        assert!(carol.messages().iter().all(|m| m.to.is_none()), "group messages name no recipient");

        // Every member's SDK acks its inbox: "delivered to all" follows.
        let newest = *stored.last().unwrap();
        alice
            .wait_for("delivered to all", |e| match e {
                AppEvent::Receipt(r)
                    if r.group == Some(group) && r.status >= ReceiptStatus::Delivered && r.up_to >= newest =>
                {
                    Some(())
                }
                _ => None,
            })
            .await;
        assert_eq!(alice.client.pending().unwrap(), 0, "every send settled");
    }

    async fn group_changes_from_the_sdk_reach_the_members_and_a_removed_member_hears_no_more(backend) {
        let server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let mut apps = Vec::new();
        for name in ["alice", "bob", "carol", "dave"] {
            let token = server.register(name);
            apps.push(App::connect(&server, name, &token, "phone", dir.path()).await);
        }
        let [alice, bob, carol, dave] = &mut apps[..] else { unreachable!() };
        alice.client.create_group("Team", &["bob"]).await.unwrap();
        let group = group_event(alice, GroupChange::Created, None).await.group;

        alice.client.change_group(GroupRequest::Add { group, user: "carol".into() }).await.unwrap();
        assert_eq!(group_event(carol, GroupChange::Added, Some("carol")).await.by.as_deref(), Some("alice"));
        group_event(bob, GroupChange::Added, Some("carol")).await;

        // Bob is no admin: his change is refused, to him alone.
        bob.client.change_group(GroupRequest::Remove { group, user: "carol".into() }).await.unwrap();
        let refused = bob
            .wait_for("not_admin", |e| match e {
                AppEvent::Rejected(error) if error.on == "group" => Some(error.clone()),
                _ => None,
            })
            .await;
        assert_eq!(refused.code, ErrorCode::NotAdmin);

        // Dave is no member: his send is refused and leaves his outbox.
        let stranger = dave.client.send_to_group(group, "let me in").await.unwrap();
        let refused = dave
            .wait_for("not_a_member", |e| match e {
                AppEvent::Rejected(error) if error.client_id.as_deref() == Some(stranger.as_str()) => {
                    Some(error.clone())
                }
                _ => None,
            })
            .await;
        assert_eq!(refused.code, ErrorCode::NotAMember);
        assert_eq!(dave.client.pending().unwrap(), 0);

        alice.client.change_group(GroupRequest::Remove { group, user: "bob".into() }).await.unwrap();
        group_event(bob, GroupChange::Removed, Some("bob")).await;
        alice.client.change_group(GroupRequest::Rename { group, name: "Core".into() }).await.unwrap();
        assert_eq!(group_event(carol, GroupChange::Renamed, None).await.name, "Core");
        let after = alice.client.send_to_group(group, "after bob left").await.unwrap();
        alice.sent(&after).await;
        carol.message_from("alice", "after bob left").await;
        bob.settle(Duration::from_secs(1)).await;
        assert!(group_bodies(bob, group).is_empty(), "a removed member receives nothing: {:?}", group_bodies(bob, group));
        assert!(
            !bob.seen.iter().any(|e| matches!(e, AppEvent::Group(g) if g.change == GroupChange::Renamed)),
            "nor later changes"
        );

        carol.client.change_group(GroupRequest::Leave { group }).await.unwrap();
        group_event(alice, GroupChange::Left, Some("carol")).await;
    }

    async fn group_sends_in_flight_across_a_server_crash_arrive_once_in_order(backend) {
        const SENT: usize = 200;
        let mut server = Server::start(backend);
        let dir = tempfile::tempdir().unwrap();
        let mut apps = Vec::new();
        for name in ["alice", "bob", "carol"] {
            let token = server.register(name);
            apps.push(App::connect(&server, name, &token, "phone", dir.path()).await);
        }
        apps[0].client.create_group("Crash", &["bob", "carol"]).await.unwrap();
        let group = group_event(&mut apps[0], GroupChange::Created, None).await.group;
        for member in &mut apps[1..] {
            group_event(member, GroupChange::Created, None).await;
        }
        for k in 0..SENT {
            apps[0].client.send_to_group(group, &k.to_string()).await.unwrap();
        }
        // Kill the server with some of them stored and the rest in the
        // outbox or in flight: the SDK resends, the server dedupes.
        let store = server.store();
        assert!(
            eventually(Duration::from_secs(30), || store.inbox_head("carol").unwrap_or(0) >= 10).await,
            "some are stored before the crash"
        );
        server.crash_and_restart();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        for member in &mut apps[1..] {
            while group_bodies(member, group).len() < SENT && tokio::time::Instant::now() < deadline {
                member.settle(Duration::from_millis(200)).await;
            }
            member.settle(Duration::from_millis(300)).await;
            let want: Vec<String> = (0..SENT).map(|k| format!("alice: {k}")).collect();
            assert_eq!(group_bodies(member, group), want, "every message once, in the order sent");
        }
        let alice = &mut apps[0];
        while alice.client.pending().unwrap() > 0 && tokio::time::Instant::now() < deadline {
            alice.settle(Duration::from_millis(200)).await;
        }
        assert_eq!(alice.client.pending().unwrap(), 0, "the outbox empties");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_refuses_a_bad_group_name_or_member_before_sending_anything() {
    let server = Server::start(common::Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let token = server.register("alice");
    let alice = App::connect(&server, "alice", &token, "phone", dir.path()).await;
    assert!(matches!(
        alice.client.create_group("   ", &["bob"]).await,
        Err(ClientError::InvalidGroupName(_))
    ));
    assert!(matches!(
        alice.client.create_group(&"x".repeat(65), &[]).await,
        Err(ClientError::InvalidGroupName(_))
    ));
    assert!(matches!(
        alice.client.create_group("Team", &["Not A Name"]).await,
        Err(ClientError::InvalidPeer(_))
    ));
    assert!(matches!(
        alice.client.send_to_group(7, "").await,
        Err(ClientError::EmptyBody)
    ));
    assert_eq!(alice.client.pending().unwrap(), 0);
}
