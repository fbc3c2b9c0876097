//! Unit and property tests of the vCard ↔ EAS mapping and the merge.

use eas_wbxml::tags::{airsync as a, contacts as c};
use eas_wbxml::{Element, Writer};

use super::*;
use crate::mime::{BodyPreference, BodyType};

const RICH: &str = "BEGIN:VCARD\r\n\
VERSION:3.0\r\n\
PRODID:-//Example//Book 1.0//EN\r\n\
UID:rich-1\r\n\
FN:Jane Q. Doe\r\n\
N:Doe;Jane;Q.;Dr.;PhD\r\n\
NICKNAME:JD\r\n\
ORG:Acme Corp;Research\r\n\
TITLE:Chief Scientist\r\n\
X-EAS-OFFICELOCATION:B2.14\r\n\
item1.EMAIL;TYPE=INTERNET,pref:jane@acme.example\r\n\
item1.X-ABLabel:_$!<Work>!$_\r\n\
EMAIL;TYPE=INTERNET,HOME:jane@home.example\r\n\
EMAIL;TYPE=INTERNET:jq@old.example\r\n\
EMAIL;TYPE=INTERNET:fourth@extra.example\r\n\
TEL;TYPE=CELL:+1 555 0100\r\n\
TEL;TYPE=WORK,VOICE:+1 555 0101\r\n\
TEL;TYPE=WORK,VOICE:+1 555 0102\r\n\
TEL;TYPE=WORK,VOICE:+1 555 0109\r\n\
TEL;TYPE=HOME,VOICE:+1 555 0103\r\n\
TEL;TYPE=WORK,FAX:+1 555 0104\r\n\
TEL;TYPE=PAGER:+1 555 0105\r\n\
TEL;TYPE=CAR:+1 555 0106\r\n\
ADR;TYPE=HOME:;Apt 4;12 Elm St;Springfield;IL;62701;USA\r\n\
ADR;TYPE=WORK:;;1 Acme Way;Shelbyville;IL;62565;USA\r\n\
ADR;TYPE=HOME:;;99 Second Home Rd;Lakeside;WI;53000;USA\r\n\
BDAY:1980-05-17\r\n\
X-ANNIVERSARY:2005-09-10\r\n\
URL:https://jane.example\r\n\
IMPP:xmpp:jane@chat.example\r\n\
X-SPOUSE:John Doe\r\n\
X-MANAGER:Wile E.\r\n\
X-ASSISTANT:Road Runner\r\n\
X-CHILD:Jimmy\r\n\
CATEGORIES:Friends,Work\r\n\
NOTE:Met at the conference.\\nLikes tea.\r\n\
PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRgABAQ==\r\n\
X-FOO;X-PARAM=1:keep me\r\n\
GEO:37.386013;-122.082932\r\n\
END:VCARD\r\n";

fn rich() -> calcard::vcard::VCard {
    parse_vcard(RICH).unwrap()
}

fn opts() -> MergeOptions {
    MergeOptions {
        supported: None,
        picture_max_bytes: DEFAULT_PICTURE_MAX_BYTES,
        body_truncated: false,
    }
}

fn render_opts() -> RenderOptions {
    RenderOptions {
        body_preferences: vec![BodyPreference::new(BodyType::Plain)],
        picture_max_bytes: DEFAULT_PICTURE_MAX_BYTES,
    }
}

/// The contact rendered and read back as a phone would send it.
fn through_the_wire(contact: &Contact, o: &RenderOptions) -> Contact {
    let mut w = Writer::new(Vec::new()).unwrap();
    w.start(a::ApplicationData).unwrap();
    write_application_data(&mut w, contact, o).unwrap();
    w.end().unwrap();
    let bytes = w.finish().unwrap();
    let tree = Element::decode(&bytes).unwrap();
    parse_application_data(&tree).unwrap()
}

#[test]
fn reads_every_kind_of_property() {
    let got = from_vcard(&rich());
    use Field::*;
    let expect = [
        (FileAs, "Jane Q. Doe"),
        (LastName, "Doe"),
        (FirstName, "Jane"),
        (MiddleName, "Q."),
        (Title, "Dr."),
        (Suffix, "PhD"),
        (NickName, "JD"),
        (CompanyName, "Acme Corp"),
        (Department, "Research"),
        (JobTitle, "Chief Scientist"),
        (OfficeLocation, "B2.14"),
        (Email1, "jane@acme.example"),
        (Email2, "jane@home.example"),
        (Email3, "jq@old.example"),
        (MobilePhone, "+1 555 0100"),
        (BusinessPhone, "+1 555 0101"),
        (Business2Phone, "+1 555 0102"),
        (HomePhone, "+1 555 0103"),
        (BusinessFax, "+1 555 0104"),
        (PagerNumber, "+1 555 0105"),
        (CarPhone, "+1 555 0106"),
        (HomeStreet, "12 Elm St"),
        (HomeCity, "Springfield"),
        (HomeState, "IL"),
        (HomePostalCode, "62701"),
        (HomeCountry, "USA"),
        (BusinessStreet, "1 Acme Way"),
        (BusinessCity, "Shelbyville"),
        (Birthday, "1980-05-17T00:00:00.000Z"),
        (Anniversary, "2005-09-10T00:00:00.000Z"),
        (WebPage, "https://jane.example"),
        (Im1, "jane@chat.example"),
        (Spouse, "John Doe"),
        (ManagerName, "Wile E."),
        (AssistantName, "Road Runner"),
    ];
    for (f, v) in expect {
        assert_eq!(got.get(f), Some(v), "{f:?}");
    }
    // The second home address and the fourth e-mail have no slot.
    assert_eq!(got.get(OtherStreet), None);
    assert_eq!(got.categories, vec!["Friends", "Work"]);
    assert_eq!(got.children, vec!["Jimmy"]);
    assert_eq!(
        got.body.as_deref(),
        Some("Met at the conference.\nLikes tea.")
    );
    assert_eq!(
        got.picture.as_deref(),
        Some(
            &[
                0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46, 0x49, 0x46, 0, 1, 1
            ][..]
        )
    );
}

#[test]
fn vcard_2_1_with_quoted_printable_and_charsets() {
    let card = parse_vcard(
        "BEGIN:VCARD\r\nVERSION:2.1\r\n\
         N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen\r\n\
         FN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:J=FCrgen M=FCller\r\n\
         TEL;HOME;VOICE:123\r\nTEL;CELL:456\r\n\
         NOTE;ENCODING=QUOTED-PRINTABLE:line one=0D=0Aline two\r\n\
         END:VCARD\r\n",
    )
    .unwrap();
    let got = from_vcard(&card);
    assert_eq!(got.get(Field::LastName), Some("Müller"));
    assert_eq!(got.get(Field::FirstName), Some("Jürgen"));
    assert_eq!(got.get(Field::FileAs), Some("Jürgen Müller"));
    assert_eq!(got.get(Field::HomePhone), Some("123"));
    assert_eq!(got.get(Field::MobilePhone), Some("456"));
    assert!(got.body.unwrap().contains("line two"));
    // Written back as 3.0 (UTF-8, no QUOTED-PRINTABLE).
    let text = to_text(&card);
    assert!(text.contains("VERSION:3.0"), "{text}");
    assert!(text.contains("Müller"), "{text}");
}

#[test]
fn vcard_4_forms() {
    let card = parse_vcard(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ann\r\nN:Lee;Ann;;;\r\n\
         TEL;VALUE=uri;TYPE=\"voice,cell\":tel:+1-555-0199\r\n\
         BDAY:19700101\r\nANNIVERSARY:20000229\r\n\
         RELATED;TYPE=spouse;VALUE=text:Bo\r\nRELATED;TYPE=child;VALUE=text:Cy\r\n\
         PHOTO:data:image/png;base64,iVBORw0KGgo=\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let got = from_vcard(&card);
    assert_eq!(got.get(Field::MobilePhone), Some("+1-555-0199"));
    assert_eq!(got.get(Field::Birthday), Some("1970-01-01T00:00:00.000Z"));
    assert_eq!(
        got.get(Field::Anniversary),
        Some("2000-02-29T00:00:00.000Z")
    );
    assert_eq!(got.get(Field::Spouse), Some("Bo"));
    assert_eq!(got.children, vec!["Cy"]);
    assert_eq!(
        got.picture.as_deref().map(|p| &p[..4]),
        Some(&b"\x89PNG"[..])
    );
    // The data URI survives a write (calcard would escape its comma).
    let mut phone = got.clone();
    phone.picture = Some(b"\x89PNG\r\n\x1a\nnew".to_vec());
    let merged = merge(&card, &phone, &opts());
    let text = to_text(&merged);
    assert!(
        text.contains("data:image/png;base64,iVBORw0KGgpuZXc="),
        "{text}"
    );
    assert_eq!(
        from_vcard(&parse_vcard(&text).unwrap()).picture,
        phone.picture
    );
    // A changed number keeps its tel: URI form.
    phone.set(Field::MobilePhone, "+1-555-0000");
    let text = to_text(&merge(&card, &phone, &opts()));
    assert!(text.contains("tel:+1-555-0000"), "{text}");
}

#[test]
fn dates_as_phones_send_them() {
    use super::card::day_of_eas_date as day;
    assert_eq!(day("1980-05-17T00:00:00.000Z"), Some((1980, 5, 17)));
    // Local midnight east of UTC, west of UTC.
    assert_eq!(day("1980-05-16T22:00:00.000Z"), Some((1980, 5, 17)));
    assert_eq!(day("1980-05-17T05:00:00Z"), Some((1980, 5, 17)));
    assert_eq!(day("1980-12-31T23:00:00.000Z"), Some((1981, 1, 1)));
    assert_eq!(day("2000-02-28T12:00:00.000Z"), Some((2000, 2, 29)));
    assert_eq!(day("1980-02-30T00:00:00Z"), None);
    assert_eq!(day("yesterday"), None);
}

#[test]
fn round_trips_through_wbxml() {
    let contact = from_vcard(&rich());
    assert_eq!(through_the_wire(&contact, &render_opts()), contact);
}

#[test]
fn body_preferences_and_truncation() {
    let contact = Contact {
        body: Some("a <b> & c\nsecond line".into()),
        ..Contact::default()
    };
    let mut o = render_opts();
    o.body_preferences = vec![BodyPreference {
        kind: BodyType::Plain,
        truncation_size: Some(5),
        all_or_none: false,
        preview: None,
    }];
    let got = through_the_wire(&contact, &o);
    assert_eq!(got.body.as_deref(), Some("a <b>"));
    // HTML only: the notes as HTML, read back as text.
    o.body_preferences = vec![BodyPreference::new(BodyType::Html)];
    let f = render(&contact, &o).unwrap();
    assert!(!f.is_empty());
    let got = through_the_wire(&contact, &o);
    assert!(got.body.unwrap().contains("a <b> & c"));
}

#[test]
fn large_photos_are_left_out_and_survive_an_edit() {
    let card = rich();
    let mut o = render_opts();
    o.picture_max_bytes = 4;
    let on_phone = through_the_wire(&from_vcard(&card), &o);
    assert_eq!(on_phone.picture, None);
    let mut m = opts();
    m.picture_max_bytes = 4;
    let merged = merge(&card, &on_phone, &m);
    assert_eq!(from_vcard(&merged).picture, from_vcard(&card).picture);
    // With the photo shown, leaving it out deletes it.
    let mut without = from_vcard(&card);
    without.picture = None;
    assert_eq!(from_vcard(&merge(&card, &without, &opts())).picture, None);
}

#[test]
fn an_unchanged_contact_changes_nothing() {
    let card = rich();
    let same = through_the_wire(&from_vcard(&card), &render_opts());
    let merged = merge(&card, &same, &opts());
    assert_eq!(to_text(&merged), to_text(&card));
}

#[test]
fn a_phone_edit_keeps_what_eas_does_not_carry() {
    let card = rich();
    let mut phone = through_the_wire(&from_vcard(&card), &render_opts());
    phone.set(Field::FirstName, "Janet");
    phone.fields.remove(&Field::MobilePhone);
    phone.set(Field::Email2, "janet@home.example");
    phone.set(Field::RadioPhone, "+1 555 0107");
    phone.set(Field::OtherCity, "Capital City");
    phone.categories = vec!["Friends".into()];
    phone.body = Some("New notes".into());
    let merged = merge(&card, &phone, &opts());
    let text = to_text(&merged);
    let back = from_vcard(&parse_vcard(&text).unwrap());
    assert_eq!(back.get(Field::FirstName), Some("Janet"));
    assert_eq!(back.get(Field::MobilePhone), None);
    assert_eq!(back.get(Field::Email2), Some("janet@home.example"));
    assert_eq!(back.get(Field::RadioPhone), Some("+1 555 0107"));
    assert_eq!(back.get(Field::OtherCity), Some("Capital City"));
    assert_eq!(back.categories, vec!["Friends"]);
    assert_eq!(back.body.as_deref(), Some("New notes"));
    // FN was made from the names, so it follows them.
    assert_eq!(back.get(Field::FileAs), Some("Janet Q. Doe"));
    for kept in [
        "PRODID:-//Example//Book 1.0//EN",
        "UID:rich-1",
        "item1.EMAIL;TYPE=INTERNET,pref:jane@acme.example",
        "item1.X-ABLabel:_$!<Work>!$_",
        "EMAIL;TYPE=INTERNET,HOME:janet@home.example",
        "fourth@extra.example",
        "99 Second Home Rd",
        ";Apt 4;12 Elm St;",
        "+1 555 0109",
        "X-FOO;X-PARAM=1:keep me",
        "GEO:",
        "PHOTO;",
        "N:Doe;Janet;Q.;Dr.;PhD",
    ] {
        assert!(text.contains(kept), "{kept} lost:\n{text}");
    }
    assert!(!text.contains("+1 555 0100"), "{text}");
}

#[test]
fn ghosted_properties_stay() {
    let card = rich();
    // The phone supports only names and e-mail, and sends only the first name.
    let mut phone = Contact::default();
    phone.set(Field::FirstName, "Janet");
    let m = MergeOptions {
        supported: Some(vec![c::FirstName, c::LastName, c::Email1Address]),
        ..opts()
    };
    let back = from_vcard(&merge(&card, &phone, &m));
    assert_eq!(back.get(Field::FirstName), Some("Janet"));
    assert_eq!(back.get(Field::LastName), None);
    // The first address is gone; the ghosted second one stays (and moves up a slot).
    assert_eq!(back.get(Field::Email1), Some("jane@home.example"));
    assert_eq!(back.get(Field::MobilePhone), Some("+1 555 0100"));
    assert_eq!(back.body, from_vcard(&card).body);
    assert_eq!(back.categories, vec!["Friends", "Work"]);
}

#[test]
fn truncated_notes_are_not_cut_by_an_edit() {
    let card = rich();
    let mut phone = from_vcard(&card);
    phone.body = Some("Met at the".into());
    phone.set(Field::JobTitle, "CSO");
    let m = MergeOptions {
        body_truncated: true,
        ..opts()
    };
    let back = from_vcard(&merge(&card, &phone, &m));
    assert_eq!(back.body, from_vcard(&card).body);
    assert_eq!(back.get(Field::JobTitle), Some("CSO"));
}

#[test]
fn names_remake_a_derived_display_name() {
    let card =
        parse_vcard("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann Lee\r\nN:Lee;Ann;;;\r\nEND:VCARD\r\n")
            .unwrap();
    let mut phone = from_vcard(&card);
    phone.set(Field::FirstName, "Anne");
    let back = from_vcard(&merge(&card, &phone, &opts()));
    assert_eq!(back.get(Field::FileAs), Some("Anne Lee"));
}

#[test]
fn a_new_contact_is_a_valid_vcard() {
    let mut phone = Contact::default();
    phone.set(Field::FirstName, "Zed");
    phone.set(Field::LastName, "Zulu");
    phone.set(Field::MobilePhone, "+49 1");
    phone.set(Field::Birthday, "1990-01-01T23:00:00.000Z");
    phone.set(Field::Anniversary, "2010-06-01T00:00:00.000Z");
    phone.set(Field::Im1, "zed@chat.example");
    phone.set(Field::Spouse, "Yan");
    phone.children = vec!["Xi".into()];
    phone.picture = Some(vec![0xFF, 0xD8, 1, 2, 3]);
    let card = new_vcard(&phone, "new-uid-1", &opts());
    let text = to_text(&card);
    for want in [
        "VERSION:3.0",
        "UID:new-uid-1",
        "FN:Zed Zulu",
        "N:Zulu;Zed;;;",
        "BDAY:1990-01-02",
        "X-ANNIVERSARY:2010-06-01",
        "IMPP:xmpp:zed@chat.example",
        "X-SPOUSE:Yan",
        "X-CHILD:Xi",
        "PHOTO;",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let back = from_vcard(&parse_vcard(&text).unwrap());
    assert_eq!(back.get(Field::Birthday), Some("1990-01-02T00:00:00.000Z"));
    assert_eq!(back.picture, phone.picture);
    assert_eq!(back.children, phone.children);
}

#[test]
fn malformed_phone_values_are_item_errors() {
    let bad_date = Element::with_children(
        a::ApplicationData,
        vec![Element::with_text(c::Birthday, "not a date")],
    );
    assert!(matches!(
        parse_application_data(&bad_date),
        Err(ContactError::BadValue { field: "Birthday" })
    ));
    let huge = Element::with_children(
        a::ApplicationData,
        vec![Element::with_text(
            c::Picture,
            "A".repeat(MAX_PHONE_PICTURE_BASE64 + 4),
        )],
    );
    assert_eq!(
        parse_application_data(&huge),
        Err(ContactError::PictureTooLarge)
    );
    let broken = Element::with_children(
        a::ApplicationData,
        vec![Element::with_text(c::Picture, "!!!")],
    );
    assert!(parse_application_data(&broken).is_err());
    // A display-name form of an address is reduced to the address.
    let named = Element::with_children(
        a::ApplicationData,
        vec![Element::with_text(
            c::Email1Address,
            "\"Doe, Jane\" <jane@x.example>",
        )],
    );
    assert_eq!(
        parse_application_data(&named).unwrap().get(Field::Email1),
        Some("jane@x.example")
    );
    assert!(parse_vcard("not a vcard").is_err());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9,;.@_-]{0,12}"
    }

    fn contact() -> impl Strategy<Value = Contact> {
        let fields: Vec<Field> = Field::ALL
            .into_iter()
            .filter(|f| !matches!(f, Field::Birthday | Field::Anniversary | Field::FileAs))
            .collect();
        (
            proptest::collection::btree_map(proptest::sample::select(fields), value(), 0..20),
            proptest::option::of((1900u16..2100, 1u8..=12, 1u8..=28)),
            proptest::collection::vec("[A-Za-z0-9][A-Za-z0-9 _-]{0,8}[A-Za-z0-9]", 0..3),
            proptest::option::of("[A-Za-z0-9][A-Za-z0-9 ,;.\n]{0,30}[A-Za-z0-9]"),
            // Images start with their magic bytes (calcard reads bytes that are UTF-8 as text).
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(
                |mut v| {
                    v.splice(0..0, [0xFF, 0xD8]);
                    v
                },
            )),
        )
            .prop_map(|(fields, bday, categories, body, picture)| {
                let mut c = Contact {
                    fields,
                    categories,
                    body,
                    picture,
                    ..Contact::default()
                };
                if let Some(d) = bday {
                    c.set(Field::Birthday, super::super::card::eas_date(d));
                }
                c
            })
    }

    /// Slots that are one list on the vCard side: a value may move up when one before it
    /// goes (extra values stored beyond EAS's slots move up too).
    const GROUPS: &[&[Field]] = &[
        &[Field::Email1, Field::Email2, Field::Email3],
        &[Field::Im1, Field::Im2, Field::Im3],
        &[Field::HomePhone, Field::Home2Phone],
        &[Field::BusinessPhone, Field::Business2Phone],
    ];

    fn group_values(c: &Contact, g: &[Field]) -> Vec<String> {
        g.iter()
            .filter_map(|f| c.get(*f))
            .map(str::to_owned)
            .collect()
    }

    /// `back` holds what `phone` sent: the same single fields, and each group's values first.
    fn holds(back: &Contact, phone: &Contact, exact: bool) -> Result<(), String> {
        for f in Field::ALL {
            if f == Field::FileAs || GROUPS.iter().any(|g| g.contains(&f)) {
                continue;
            }
            if back.get(f) != phone.get(f) {
                return Err(format!("{f:?}: {:?} != {:?}", back.get(f), phone.get(f)));
            }
        }
        for g in GROUPS {
            let (b, p) = (group_values(back, g), group_values(phone, g));
            let ok = if exact { b == p } else { b.starts_with(&p) };
            if !ok {
                return Err(format!("{g:?}: {b:?} vs {p:?}"));
            }
        }
        Ok(())
    }

    proptest! {
        // Whatever the phone adds comes back from the stored vCard as it was sent.
        #[test]
        fn new_contacts_round_trip(phone in contact()) {
            let card = new_vcard(&phone, "uid", &opts());
            let text = to_text(&card);
            let back = from_vcard(&parse_vcard(&text).unwrap());
            prop_assert!(back.get(Field::FileAs).is_some(), "no FN:\n{}", text);
            if let Err(e) = holds(&back, &phone, true) {
                prop_assert!(false, "{}\n{}", e, text);
            }
            prop_assert_eq!(&back.categories, &phone.categories);
            prop_assert_eq!(&back.body, &phone.body);
            prop_assert_eq!(&back.picture, &phone.picture);
        }

        // Any phone edit of the rich card keeps every entry EAS does not carry.
        #[test]
        fn edits_keep_the_rest(phone in contact()) {
            let card = rich();
            let merged = to_text(&merge(&card, &phone, &opts()));
            for kept in ["PRODID:", "UID:rich-1", "item1.X-ABLabel", "fourth@extra.example",
                         "99 Second Home Rd", "X-FOO;X-PARAM=1:keep me", "GEO:", "+1 555 0109"] {
                prop_assert!(merged.contains(kept), "{} lost:\n{}", kept, merged);
            }
            let back = from_vcard(&parse_vcard(&merged).unwrap());
            if let Err(e) = holds(&back, &phone, false) {
                prop_assert!(false, "{}\n{}", e, merged);
            }
        }
    }
}

/// The readable fixtures of a contacts Sync (fixtures/wbxml/sync.*.contacts.xml) are what this
/// module reads and writes.
mod fixtures {
    use super::*;

    fn application_data(xml: &str, command: eas_wbxml::Tag) -> Element {
        let tree = eas_wbxml::from_xml(xml).unwrap();
        let coll = tree
            .child(a::Collections)
            .and_then(|c| c.child(a::Collection))
            .unwrap();
        coll.child(a::Commands)
            .and_then(|c| c.child(command))
            .and_then(|c| c.child(a::ApplicationData))
            .unwrap()
            .clone()
    }

    #[test]
    fn the_phones_add_and_change_parse() {
        let xml = include_str!("../../fixtures/wbxml/sync.request.contacts.xml");
        let add = parse_application_data(&application_data(xml, a::Add)).unwrap();
        assert_eq!(add.get(Field::Email1), Some("richard@example.com"));
        // Local midnight of 2 March in UTC+1.
        assert_eq!(add.get(Field::Birthday), Some("1975-03-02T00:00:00.000Z"));
        assert_eq!(add.get(Field::NickName), Some("Rick"));
        assert_eq!(add.body.as_deref(), Some("Added on the phone."));
        let card = new_vcard(&add, "uid-1", &opts());
        let text = to_text(&card);
        assert!(text.contains("BDAY:1975-03-02"), "{text}");
        // The Change applied to the stored card keeps what EAS does not carry.
        let stored = parse_vcard(include_str!("../../fixtures/contacts/jane.vcf")).unwrap();
        let change = parse_application_data(&application_data(xml, a::Change)).unwrap();
        let merged = to_text(&merge(&stored, &change, &opts()));
        for kept in [
            "X-FOO;X-PARAM=1:not carried by EAS",
            "item1.X-ABLabel",
            "PRODID:",
        ] {
            assert!(merged.contains(kept), "{kept} lost:\n{merged}");
        }
        assert!(merged.contains("TITLE:Chief Science Officer"), "{merged}");
    }

    #[test]
    fn the_servers_add_is_the_rendered_vcard() {
        let xml = include_str!("../../fixtures/wbxml/sync.response.contacts.xml");
        let want = application_data(xml, a::Add);
        let card = parse_vcard(include_str!("../../fixtures/contacts/jane.vcf")).unwrap();
        let mut w = Writer::new(Vec::new()).unwrap();
        w.start(a::ApplicationData).unwrap();
        write_application_data(&mut w, &from_vcard(&card), &render_opts()).unwrap();
        w.end().unwrap();
        let got = Element::decode(&w.finish().unwrap()).unwrap();
        assert_eq!(eas_wbxml::to_xml(&got), eas_wbxml::to_xml(&want));
    }
}
