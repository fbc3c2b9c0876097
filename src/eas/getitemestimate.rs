//! GetItemEstimate (MS-ASCMD 2.2.1.9): how many changes the next Sync of each collection
//! would carry. The count comes from the same snapshot diff Sync uses, so it matches what
//! the next Sync sends (before windowing).

use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, getitemestimate as g};

use super::ids::{CollectionId, Presented, SyncKey};
use super::status::GetItemEstimateStatus;
use super::sync::{self, Stores, request::Options};
use super::{Context, EasError, Reply, child_text};

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let Some(collections) = body.child(g::Collections) else {
        return Ok(Reply::Document(super::status_document(
            super::version::Command::GetItemEstimate,
            GetItemEstimateStatus::InvalidCollection,
        )));
    };
    let hierarchy = ctx.folders()?;
    let mut stores = Stores::default();
    let mut responses = Vec::new();
    for c in collections.children_with(g::Collection) {
        let id = Presented::read(child_text(c, g::CollectionId).unwrap_or(""), |t| {
            CollectionId::try_from(t.trim())
        });
        // 12.1 puts SyncKey and FilterType in the collection; 14.0+ inside airsync:Options.
        let key = SyncKey::try_from(child_text(c, a::SyncKey).unwrap_or("")).ok();
        let filter = child_text(c, a::FilterType)
            .or_else(|| {
                c.child(a::Options)
                    .and_then(|o| child_text(o, a::FilterType))
            })
            .and_then(|f| f.trim().parse().ok());
        let options = filter.map(|filter_type| Options {
            filter_type,
            ..Options::default()
        });
        let folder = id
            .id()
            .and_then(|c| hierarchy.iter().find(|f| f.id == c.number()));
        let result = match folder {
            None => Err(GetItemEstimateStatus::InvalidCollection),
            Some(folder) => {
                // Without options in the request, the ones the device last synced with apply.
                let options = match options {
                    Some(o) => o,
                    None => sync::cached_options(ctx, &id)?,
                };
                stores
                    .estimate(ctx, &hierarchy, folder, key, &options)
                    .await?
            }
        };
        let mut collection = Element::new(g::Collection);
        collection.push(Element::with_text(g::CollectionId, id.text()));
        let status = match result {
            Ok(n) => {
                collection.push(Element::with_text(g::Estimate, n.to_string()));
                GetItemEstimateStatus::Success
            }
            Err(status) => status,
        };
        responses.push(Element::with_children(
            g::Response,
            vec![Element::with_text(g::Status, status.as_str()), collection],
        ));
    }
    stores.finish(false).await;
    Ok(Reply::Document(Element::with_children(
        g::GetItemEstimate,
        responses,
    )))
}
