//! The store's group reads on SQLite and on a real PostgreSQL, over a
//! group whose membership changed: each member sees their windows only, in
//! history, search, stars, the chat list and export. The group's rows are
//! written with the store functions the bridge uses (`tests/groups_reading.rs` drives the
//! same through a real server).

use diesel::RunQueryDsl;
use protocol::groups::{GroupChange, GroupEvent};
use protocol::history::GroupHistoryItem;
use protocol::messages::ReceiptStatus;
use store::group_receipts::Position;
use store::groups::Created;
use store::messages::{NewMessage, Stored};
use store::on_both_backends;
use store::search::Scope;
use store::Store;

/// Runs test-written SQL (fixtures, never client input).
fn execute(store: &Store, sql: &str) {
    let mut conn = store.conn().unwrap();
    store::on_backend!(&mut *conn, c => diesel::sql_query(sql).execute(c))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn change(store: &Store, change: GroupChange, user: Option<&str>, after: i64, at: i64) {
    let event = GroupEvent {
        group: 1,
        change,
        user: user.map(str::to_owned),
        by: Some("alice".into()),
        name: "Team".into(),
        at,
        members: None,
        client_id: None,
        seconds: None,
    };
    store.transaction(|tx| tx.record_group_change(&event, after)).unwrap();
}

fn send(store: &Store, sender: &str, recipient: &str, client_id: &str, body: &str) -> i64 {
    let stored = store.transaction(|tx| tx.store_message(&NewMessage {
        sender,
        recipient,
        client_id,
        body,
        media: None,
        sent_at: 1,
        expires_at: None,
    })).unwrap();
    match stored {
        Stored::New { id } => id,
        other => panic!("{other:?}"),
    }
}

/// History as `m:ID` and `CHANGE:USER`, newest first.
fn rendered(items: &[GroupHistoryItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            GroupHistoryItem::Message(m) => format!("m:{}", m.id),
            GroupHistoryItem::Change(c) => {
                format!("{}:{}", c.event.change.as_str(), c.event.user.as_deref().unwrap_or("-"))
            }
        })
        .collect()
}

/// Team (group 1): alice, bob and carol; alice says one thing, carol is
/// removed, bob says another, dave is added, alice welcomes him.
fn team(store: &Store) -> [i64; 3] {
    for user in ["alice", "bob", "carol", "dave", "eve"] {
        store.create_user(user, "correct horse").unwrap();
    }
    store.start_search_cursor().unwrap();
    store.transaction(|tx| {
        assert_eq!(tx.create_group("alice", "c-1", "Team", 100)?, Created::New(1));
        tx.open_windows(1, &[("alice", true), ("bob", false), ("carol", false)], 100, 0)
    }).unwrap();
    change(store, GroupChange::Created, None, 0, 100);
    let first = send(store, "alice", "#1", "a-1", "pineapple for everyone");
    store.transaction(|tx| tx.close_window(1, "carol", 200, first)).unwrap();
    change(store, GroupChange::Removed, Some("carol"), first, 200);
    let second = send(store, "bob", "#1", "b-1", "pineapple and mango");
    store.transaction(|tx| tx.open_windows(1, &[("dave", false)], 300, second)).unwrap();
    change(store, GroupChange::Added, Some("dave"), second, 300);
    let third = send(store, "alice", "#1", "a-2", "welcome dave");
    [first, second, third]
}

on_both_backends! {
    each_member_reads_only_their_windows(store) {
        let [first, second, third] = team(&store);
        let m = |id: i64| format!("m:{id}");
        let everything = [m(third), "added:dave".into(), m(second), "removed:carol".into(), m(first), "created:-".into()];
        let page = store.group_history("bob", 1, None, 50).unwrap().unwrap();
        assert_eq!(rendered(&page.items), everything);
        assert_eq!(page.next, None);
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = store.group_history("bob", 1, before, 1).unwrap().unwrap();
            paged.extend(rendered(&page.items));
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, everything);
        assert_eq!(rendered(&store.group_history("carol", 1, None, 50).unwrap().unwrap().items), ["removed:carol".to_owned(), m(first), "created:-".into()]);
        assert_eq!(rendered(&store.group_history("dave", 1, None, 50).unwrap().unwrap().items), [m(third), "added:dave".into()]);
        assert!(store.group_history("eve", 1, None, 50).unwrap().is_none());
        assert!(store.group_history("bob", 2, None, 50).unwrap().is_none());

        // Search: one row per word, filtered by windows.
        while store.index_pass(1_000).unwrap().more() {}
        let ids = |user: &str, q: &str, scope: Scope<'_>| -> Vec<i64> {
            store.search(user, q, scope, None, 50).unwrap().unwrap().items.iter().map(|m| m.id).collect()
        };
        assert_eq!(ids("bob", "pineapple", Scope::All), [second, first]);
        assert_eq!(ids("bob", "pineapple", Scope::Group(1)), [second, first]);
        assert_eq!(ids("carol", "pineapple", Scope::All), [first]);
        assert_eq!(ids("carol", "mango", Scope::Group(1)), Vec::<i64>::new());
        assert_eq!(ids("dave", "pineapple", Scope::All), Vec::<i64>::new());
        assert_eq!(ids("eve", "pineapple", Scope::Group(1)), Vec::<i64>::new());
        assert_eq!(ids("bob", "pineapple", Scope::Peer("alice")), Vec::<i64>::new());

        // Stars: only what the member may see.
        let star = |user: &str, id: i64| store.transaction(|tx| tx.set_star(user, id, true, 1)).unwrap();
        assert_eq!(star("carol", first), store::stars::StarChange::Changed);
        assert_eq!(star("carol", second), store::stars::StarChange::NotFound);
        assert_eq!(star("eve", first), store::stars::StarChange::NotFound);
        let stars = store.stars("carol", None, 50).unwrap();
        assert_eq!(stars.items.len(), 1);
        assert_eq!((stars.items[0].peer.clone(), stars.items[0].message.group), (None, Some(1)));

        // The chat list and the export.
        let chats = store.chats("carol", None, 50).unwrap();
        assert_eq!(chats.items.len(), 1);
        assert_eq!((chats.items[0].group, chats.items[0].last_message.id, chats.items[0].unread), (Some(1), first, 1));
        let chats = store.chats("bob", None, 50).unwrap();
        assert_eq!((chats.items[0].last_message.id, chats.items[0].unread), (third, 2));
        let exported: Vec<i64> = store.exported_messages("carol", 0, 50).unwrap().iter().map(|m| m.id).collect();
        assert_eq!(exported, [first]);
        assert_eq!(store.exported_groups("carol").unwrap()[0].memberships[0].left_at, Some(200));
        assert!(store.exported_groups("eve").unwrap().is_empty());
    }

    the_sender_alone_sees_each_members_times_with_read_privacy(store) {
        let [first, _, third] = team(&store);
        // Bob got the first at 150 and read it at 250; Bob and Dave got
        // the third at 350 and read it at 360, Dave with read receipts off.
        let at = |status, user: &str, up_to, at| {
            let position = Position { group: 1, user: user.to_owned(), up_to };
            store.transaction(|tx| tx.advance_group_members(status, vec![position], at)).unwrap();
        };
        at(ReceiptStatus::Delivered, "bob", first, 150);
        at(ReceiptStatus::Read, "bob", first, 250);
        at(ReceiptStatus::Read, "bob", third, 360);
        at(ReceiptStatus::Delivered, "dave", third, 350);
        at(ReceiptStatus::Read, "dave", third, 360);
        execute(&store, "UPDATE users SET read_receipts = FALSE WHERE name = 'dave'");
        let times = |sender: &str, id: i64| -> Vec<(String, Option<i64>, Option<i64>)> {
            store.group_message_receipts(sender, 1, id).unwrap().unwrap()
                .into_iter().map(|r| (r.user, r.delivered_at, r.read_at)).collect()
        };
        // Carol, removed since, is no longer counted; Dave came later.
        assert_eq!(times("alice", first), [("bob".to_owned(), Some(150), Some(250))]);
        assert_eq!(times("alice", third), [("bob".to_owned(), Some(360), Some(360)), ("dave".to_owned(), Some(350), None)]);
        // Nobody but the sender may ask, and only about that group.
        assert!(store.group_message_receipts("bob", 1, first).unwrap().is_none());
        assert!(store.group_message_receipts("alice", 2, first).unwrap().is_none());
        // A sender with read receipts off sees nobody's reads.
        execute(&store, "UPDATE users SET read_receipts = FALSE WHERE name = 'alice'");
        assert_eq!(times("alice", first), [("bob".to_owned(), Some(150), None)]);
    }
}
