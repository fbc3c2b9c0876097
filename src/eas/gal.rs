//! The Global Address List as Search (Store `GAL`) and Find's GalSearchCriterion show it:
//! directory entries written as `gal:` properties, with contact photos under the request's
//! size and count limits. Owns no lookup logic (that is [`crate::directory`]).

use eas_wbxml::tags::gal as g;
use eas_wbxml::{Element, Tag, Writer};

use super::status::PictureStatus;
use super::{EasError, child_text};
use crate::directory::Entry;

/// What the request asked for photos: none at all without a Picture element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureRequest {
    /// Largest photo, in bytes, that may be sent.
    pub max_size: Option<usize>,
    /// How many photos one response may carry.
    pub max_pictures: Option<usize>,
}

impl PictureRequest {
    /// Reads `Picture { MaxSize?, MaxPictures? }` in the given code page (iOS sends it empty).
    pub fn from_options(
        options: Option<&Element>,
        picture: Tag,
        size: Tag,
        count: Tag,
    ) -> Option<Self> {
        let p = options?.child(picture)?;
        let num = |t| child_text(p, t).and_then(|v| v.trim().parse::<usize>().ok());
        Some(PictureRequest {
            max_size: num(size),
            max_pictures: num(count),
        })
    }
}

/// Counts photos sent so far in one response.
#[derive(Debug)]
pub struct PictureBudget {
    request: Option<PictureRequest>,
    sent: usize,
}

impl PictureBudget {
    pub fn new(request: Option<PictureRequest>) -> PictureBudget {
        PictureBudget { request, sent: 0 }
    }

    /// The status and the bytes to send for one entry's photo; None when no photo was asked.
    pub fn take<'e>(&mut self, entry: &'e Entry) -> Option<(PictureStatus, Option<&'e [u8]>)> {
        let request = self.request?;
        let Some(photo) = entry.photo.as_deref() else {
            return Some((PictureStatus::NoPicture, None));
        };
        if request.max_size.is_some_and(|m| photo.len() > m) {
            return Some((PictureStatus::PictureTooLarge, None));
        }
        if request.max_pictures.is_some_and(|m| self.sent >= m) {
            return Some((PictureStatus::PictureLimitReached, None));
        }
        self.sent += 1;
        Some((PictureStatus::Success, Some(photo)))
    }
}

/// The `gal:` properties of one entry, in the schema's order.
pub fn write_properties<W: std::io::Write>(
    w: &mut Writer<W>,
    entry: &Entry,
    pictures: &mut PictureBudget,
) -> Result<(), EasError> {
    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    w.text_element(g::DisplayName, &entry.display_name)
        .map_err(enc)?;
    let optional = [
        (g::Phone, entry.phone.as_deref()),
        (g::Office, entry.office.as_deref()),
        (g::Title, entry.title.as_deref()),
        (g::Company, entry.company.as_deref()),
        (g::Alias, entry.alias_or_local_part()),
        (g::FirstName, entry.first_name.as_deref()),
        (g::LastName, entry.last_name.as_deref()),
        (g::HomePhone, entry.home_phone.as_deref()),
        (g::MobilePhone, entry.mobile_phone.as_deref()),
        (g::EmailAddress, entry.primary_email()),
    ];
    for (tag, value) in optional {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            w.text_element(tag, v).map_err(enc)?;
        }
    }
    if let Some((status, data)) = pictures.take(entry) {
        w.start(g::Picture).map_err(enc)?;
        w.text_element(g::Status, status.as_str()).map_err(enc)?;
        if let Some(data) = data {
            w.opaque_element(g::Data, data).map_err(enc)?;
        }
        w.end().map_err(enc)?;
    }
    Ok(())
}

/// The tags of a command's result list: Search and Find each have their own.
pub struct ResultTags {
    pub result: Tag,
    pub properties: Tag,
    pub range: Tag,
    pub total: Tag,
}

/// `Result { Properties { gal:… } }` for each shown entry (the first is number `first`), then
/// `Range` and `Total`.
pub fn write_results<W: std::io::Write>(
    w: &mut Writer<W>,
    tags: &ResultTags,
    shown: &[Entry],
    first: usize,
    total: usize,
    pictures: &mut PictureBudget,
) -> Result<(), EasError> {
    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    for entry in shown {
        w.start(tags.result).map_err(enc)?;
        w.start(tags.properties).map_err(enc)?;
        write_properties(w, entry, pictures)?;
        w.end().map_err(enc)?;
        w.end().map_err(enc)?;
    }
    let last = first + shown.len().max(1) - 1;
    w.text_element(tags.range, &format!("{first}-{last}"))
        .map_err(enc)?;
    w.text_element(tags.total, &total.to_string())
        .map_err(enc)?;
    Ok(())
}

/// `first-last` → the slice of `total` results to show, at most `max` of them; None when the
/// range starts past the end.
pub fn window(first: usize, last: usize, total: usize, max: usize) -> Option<(usize, usize)> {
    if first >= total {
        return None;
    }
    Some((first, last.min(first + max - 1).min(total - 1)))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn photos_respect_size_and_count() {
        let with = Entry {
            photo: Some(vec![1, 2, 3]),
            ..Entry::default()
        };
        let without = Entry::default();
        let mut none = PictureBudget::new(None);
        assert_eq!(none.take(&with), None);
        let mut b = PictureBudget::new(Some(PictureRequest {
            max_size: Some(3),
            max_pictures: Some(1),
        }));
        assert_eq!(b.take(&without), Some((PictureStatus::NoPicture, None)));
        assert_eq!(
            b.take(&with),
            Some((PictureStatus::Success, Some(&[1u8, 2, 3][..])))
        );
        assert_eq!(
            b.take(&with),
            Some((PictureStatus::PictureLimitReached, None))
        );
        let mut small = PictureBudget::new(Some(PictureRequest {
            max_size: Some(2),
            max_pictures: None,
        }));
        assert_eq!(
            small.take(&with),
            Some((PictureStatus::PictureTooLarge, None))
        );
    }

    #[test]
    fn windows() {
        assert_eq!(window(0, 99, 3, 100), Some((0, 2)));
        assert_eq!(window(2, 5, 3, 100), Some((2, 2)));
        assert_eq!(window(3, 5, 3, 100), None);
        assert_eq!(window(0, 500, 1000, 100), Some((0, 99)));
    }
}
