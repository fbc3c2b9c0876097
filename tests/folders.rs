//! The folder hierarchy against the real Dovecot: changes made in IMAP behind the gateway's
//! back show up as Add/Update/Delete, and FolderCreate/Update/Delete from the phone change IMAP
//! and are not echoed back.

mod eas;
mod support;

use eas::{Folder, Gateway, Phone, find_text, folder_changes};
use eas_wbxml::tags::folderhierarchy as fh;

/// A provisioned phone of a user of its own (so tests in this binary run in parallel) and the
/// key and folders of its first FolderSync.
async fn setup(user: &str) -> (Gateway, Phone, String, Vec<Folder>) {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let (login, password) = support::credentials(user);
    let mut phone = Phone::new(&g, &login, &password, &format!("dev-{user}"));
    phone.provision().await;
    let fs = phone.folder_sync("0").await;
    let key = find_text(&fs, fh::SyncKey).unwrap();
    let (adds, _, _) = folder_changes(&fs);
    (g, phone, key, adds)
}

#[tokio::test]
async fn imap_side_create_rename_delete_reach_the_phone() {
    let (_g, phone, key, initial) = setup("carol").await;
    let mut imap = support::session("carol").await;

    imap.create("Projekte").await.unwrap();
    imap.create("Projekte/Entwürfe 2026").await.unwrap();
    let fs = phone.folder_sync(&key).await;
    let key = find_text(&fs, fh::SyncKey).unwrap();
    let (adds, updates, deletes) = folder_changes(&fs);
    assert!(updates.is_empty() && deletes.is_empty());
    assert_eq!(adds.len(), 2, "{adds:?}");
    // Parents come before their children.
    assert_eq!(adds[0].name, "Projekte");
    assert_eq!(adds[0].parent, "0");
    assert_eq!(adds[1].name, "Entwürfe 2026");
    assert_eq!(adds[1].parent, adds[0].id);
    assert!(adds.iter().all(|f| f.kind == 12));

    // A rename keeps the folder's id: the phone sees an Update, not Delete + Add.
    imap.rename("Projekte", "Projects").await.unwrap();
    let fs = phone.folder_sync(&key).await;
    let key = find_text(&fs, fh::SyncKey).unwrap();
    let (adds2, updates, deletes) = folder_changes(&fs);
    assert!(
        adds2.is_empty() && deletes.is_empty(),
        "{adds2:?} {deletes:?}"
    );
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(
        (updates[0].id.as_str(), updates[0].name.as_str()),
        (adds[0].id.as_str(), "Projects")
    );

    imap.delete("Projects/Entwürfe 2026").await.unwrap();
    imap.delete("Projects").await.unwrap();
    let fs = phone.folder_sync(&key).await;
    let (adds3, updates, mut deletes) = folder_changes(&fs);
    deletes.sort();
    let mut expected = vec![adds[0].id.clone(), adds[1].id.clone()];
    expected.sort();
    assert!(adds3.is_empty() && updates.is_empty());
    assert_eq!(deletes, expected);
    assert!(initial.iter().any(|f| f.kind == 2));
}

#[tokio::test]
async fn a_lost_response_is_answered_again_from_the_previous_key() {
    let (_g, phone, key1, _) = setup("dave").await;
    let mut imap = support::session("dave").await;
    imap.create("Receipts").await.unwrap();
    let first = phone.folder_sync(&key1).await;
    // The phone never saw `first` and asks again with the old key: same change, not status 9.
    let retry = phone.folder_sync(&key1).await;
    assert_eq!(find_text(&retry, fh::Status).as_deref(), Some("1"));
    assert_eq!(folder_changes(&retry).0, folder_changes(&first).0);
}

#[tokio::test]
async fn folder_commands_change_imap_and_are_not_echoed() {
    let (_g, phone, key, initial) = setup("erin").await;
    let inbox = initial.iter().find(|f| f.kind == 2).unwrap().clone();
    let trash = initial.iter().find(|f| f.kind == 4).unwrap().clone();

    // Create under the Inbox.
    let r = phone
        .send(
            "FolderCreate",
            &format!(
                r#"<FolderCreate xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ParentId>{}</ParentId><DisplayName>Reisen</DisplayName><Type>12</Type></FolderCreate>"#,
                inbox.id
            ),
        )
        .await
        .tree();
    assert_eq!(find_text(&r, fh::Status).as_deref(), Some("1"));
    let key = find_text(&r, fh::SyncKey).unwrap();
    let id = find_text(&r, fh::ServerId).unwrap();
    let mut imap = support::session("erin").await;
    let names: Vec<String> = imap
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(names.contains(&"INBOX/Reisen".to_string()), "{names:?}");

    // Same name again: status 2. Stale key: status 9. Special parent rules hold.
    let again = phone
        .send(
            "FolderCreate",
            &format!(
                r#"<FolderCreate xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ParentId>{}</ParentId><DisplayName>Reisen</DisplayName><Type>12</Type></FolderCreate>"#,
                inbox.id
            ),
        )
        .await
        .tree();
    assert_eq!(find_text(&again, fh::Status).as_deref(), Some("2"));
    let stale = phone
        .send(
            "FolderCreate",
            r#"<FolderCreate xmlns="FolderHierarchy:"><SyncKey>1</SyncKey><ParentId>0</ParentId><DisplayName>X</DisplayName><Type>12</Type></FolderCreate>"#,
        )
        .await
        .tree();
    assert_eq!(find_text(&stale, fh::Status).as_deref(), Some("9"));

    // The next FolderSync does not echo the phone's own change.
    let fs = phone.folder_sync(&key).await;
    assert_eq!(folder_changes(&fs).0.len(), 0);
    assert_eq!(find_text(&fs, fh::SyncKey), Some(key.clone()));

    // Rename and move to top level.
    let r = phone
        .send(
            "FolderUpdate",
            &format!(
                r#"<FolderUpdate xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{id}</ServerId><ParentId>0</ParentId><DisplayName>Travel</DisplayName></FolderUpdate>"#
            ),
        )
        .await
        .tree();
    assert_eq!(find_text(&r, fh::Status).as_deref(), Some("1"));
    let key = find_text(&r, fh::SyncKey).unwrap();
    let names: Vec<String> = imap
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(
        names.contains(&"Travel".to_string()) && !names.contains(&"INBOX/Reisen".to_string()),
        "{names:?}"
    );

    // Special folders cannot be renamed or deleted; unknown ids are status 4.
    for (cmd, body) in [
        (
            "FolderUpdate",
            format!(
                r#"<FolderUpdate xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{}</ServerId><ParentId>0</ParentId><DisplayName>Bin</DisplayName></FolderUpdate>"#,
                trash.id
            ),
        ),
        (
            "FolderDelete",
            format!(
                r#"<FolderDelete xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{}</ServerId></FolderDelete>"#,
                inbox.id
            ),
        ),
    ] {
        let r = phone.send(cmd, &body).await.tree();
        assert_eq!(find_text(&r, fh::Status).as_deref(), Some("3"), "{cmd}");
    }
    let r = phone
        .send("FolderDelete", &format!(r#"<FolderDelete xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>9999</ServerId></FolderDelete>"#))
        .await
        .tree();
    assert_eq!(find_text(&r, fh::Status).as_deref(), Some("4"));

    // Delete.
    let r = phone
        .send("FolderDelete", &format!(r#"<FolderDelete xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{id}</ServerId></FolderDelete>"#))
        .await
        .tree();
    assert_eq!(find_text(&r, fh::Status).as_deref(), Some("1"));
    let key = find_text(&r, fh::SyncKey).unwrap();
    let names: Vec<String> = imap
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(!names.contains(&"Travel".to_string()), "{names:?}");
    let fs = phone.folder_sync(&key).await;
    assert_eq!(folder_changes(&fs), (vec![], vec![], vec![]));
}
