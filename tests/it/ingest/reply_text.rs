//! Reply text without quoted history and signature (`stripped_reply`), and the original sender
//! of hand-forwarded mail (`find_inline_forward`, `find_forwarded_original`).
//!
//! The samples are written from knowledge of each client's real plain-text output (Gmail web,
//! Outlook desktop and web, Apple Mail, Thunderbird, Yahoo, iOS and Android taglines) in the
//! languages they come in, not copied from captured mail.

use mail_parser::MessageParser;
use postern::ingest::forwarded::{find_forwarded_original, find_inline_forward, ForwardedOriginal};
use postern::ingest::reply_text::stripped_reply;

// ---------------------------------------------------------------- stripped_reply: attributions

#[test]
fn gmail_english_top_posting() {
    let text = "Thanks, that works!\n\nBest,\nAna\n\n\
On Mon, 3 Jun 2024 at 10:00, Support Team <support@brand.com> wrote:\n\n\
> Hello Ana,\n>\n> Could you send us your order number?\n>\n> Regards,\n> Bob\n";
    assert_eq!(stripped_reply(text), "Thanks, that works!\n\nBest,\nAna");
}

#[test]
fn gmail_attribution_wrapped_over_two_lines() {
    let text = "Here is the photo of the damaged box.\r\n\r\n\
On Mon, Jun 3, 2024 at 10:00\u{202f}AM Support Team at Brand <support@brand.com>\r\n\
wrote:\r\n\r\n> Could you send a photo?\r\n";
    assert_eq!(
        stripped_reply(text),
        "Here is the photo of the damaged box."
    );
}

/// Unquoted history below an attribution wrapped over two lines, the first without a colon:
/// only the second line tells it apart from prose.
#[test]
fn wrapped_attribution_above_unquoted_history() {
    let text = "Merci, c'est bien reçu.\n\n\
Le lundi 3 juin 2024 à 10 h 00, Ana Lima <ana@example.com> a\n\
écrit :\n\nBonjour, où en est ma commande ?\n";
    assert_eq!(stripped_reply(text), "Merci, c'est bien reçu.");
}

#[test]
fn attributions_in_seven_languages() {
    let cases = [
        // Gmail, French (no-break space before the colon).
        "Le lun. 3 juin 2024 à 10:00, Ana Lima <ana@example.com> a écrit\u{a0}:",
        // Apple Mail, German.
        "Am 03.06.2024 um 10:00 schrieb Ana Lima <ana@example.com>:",
        // Gmail, German.
        "Am Mo., 3. Juni 2024 um 10:00 Uhr schrieb Ana Lima <ana@example.com>:",
        // Gmail, Spanish.
        "El lun, 3 jun 2024 a las 10:00, Ana Lima (<ana@example.com>) escribió:",
        // Gmail, Italian.
        "Il giorno lun 3 giu 2024 alle ore 10:00 Ana Lima <ana@example.com> ha scritto:",
        // Apple Mail, Italian.
        "Il giorno 3 giu 2024, alle ore 10:00, Ana Lima <ana@example.com> ha scritto:",
        // Gmail, Portuguese.
        "Em seg., 3 de jun. de 2024 às 10:00, Ana Lima <ana@example.com> escreveu:",
        // Gmail, Dutch.
        "Op ma 3 jun 2024 om 10:00 schreef Ana Lima <ana@example.com>:",
        // Apple Mail, Dutch.
        "Op 3 jun. 2024, om 10:00 heeft Ana Lima <ana@example.com> het volgende geschreven:",
        // Thunderbird, English.
        "On 03/06/2024 10:00, Ana Lima wrote:",
    ];
    for attribution in cases {
        let text =
            format!("Merci, c'est parfait.\n\n{attribution}\n\n> Bonjour,\n> Voici le suivi.\n");
        assert_eq!(
            stripped_reply(&text),
            "Merci, c'est parfait.",
            "{attribution}"
        );
        // Same attribution above unquoted history (Outlook on the web does not quote).
        let text = format!("Merci.\n\n{attribution}\nBonjour,\nVoici le suivi.\n");
        assert_eq!(stripped_reply(&text), "Merci.", "unquoted: {attribution}");
    }
}

#[test]
fn nested_quotes() {
    let text = "Still nothing arrived.\n\n\
On Tue, 4 Jun 2024 at 09:00, Support <support@brand.com> wrote:\n\
> It shipped today.\n>\n\
> On Mon, 3 Jun 2024 at 10:00, Ana <ana@example.com> wrote:\n\
>> Where is my parcel?\n";
    assert_eq!(stripped_reply(text), "Still nothing arrived.");
}

// ---------------------------------------------------------------- stripped_reply: Outlook

#[test]
fn outlook_original_message_separators() {
    for separator in [
        "-----Original Message-----",
        "-----Message d'origine-----",
        "-----Ursprüngliche Nachricht-----",
        "-----Mensaje original-----",
    ] {
        let text = format!(
            "Please cancel the order.\n\nAna\n\n{separator}\nFrom: Support [mailto:support@brand.com]\n\
Sent: Monday, June 3, 2024 10:00 AM\nTo: Ana Lima\nSubject: Your order\n\nHello Ana,\n"
        );
        assert_eq!(
            stripped_reply(&text),
            "Please cancel the order.\n\nAna",
            "{separator}"
        );
    }
}

#[test]
fn outlook_rule_and_header_blocks_in_four_languages() {
    let blocks = [
        "From: Support Team <support@brand.com>\nSent: Monday, June 3, 2024 10:00 AM\nTo: Ana Lima <ana@example.com>\nSubject: RE: Order #1234",
        "De : Support Team <support@brand.com>\nEnvoyé : lundi 3 juin 2024 10:00\nÀ : Ana Lima <ana@example.com>\nObjet : RE: Commande n°1234",
        "Von: Support Team <support@brand.com>\nGesendet: Montag, 3. Juni 2024 10:00\nAn: Ana Lima <ana@example.com>\nBetreff: AW: Bestellung 1234",
        "De: Support Team <support@brand.com>\nEnviado: lunes, 3 de junio de 2024 10:00\nPara: Ana Lima <ana@example.com>\nAsunto: RE: Pedido 1234",
    ];
    for block in blocks {
        // Outlook on the web: a rule of 32 underscores above the block.
        let text = format!(
            "The parcel arrived, thank you.\n\n________________________________\n{block}\n\nHello Ana,\nYour parcel shipped.\n"
        );
        assert_eq!(
            stripped_reply(&text),
            "The parcel arrived, thank you.",
            "{block}"
        );
        // Outlook desktop: the rule is HTML only; plain text shows the bare block.
        let text = format!("The parcel arrived, thank you.\n\n{block}\n\nHello Ana,\n");
        assert_eq!(
            stripped_reply(&text),
            "The parcel arrived, thank you.",
            "{block}"
        );
    }
    // Gmail's rendering of an Outlook HTML reply: bold field names become *From:*.
    let text = "Ok for me.\n\n*From:* Support <support@brand.com>\n*Sent:* Monday, June 3, 2024 10:00 AM\n\
*To:* Ana <ana@example.com>\n*Subject:* Order\n\nHello\n";
    assert_eq!(stripped_reply(text), "Ok for me.");
}

#[test]
fn forwarded_markers_end_the_reply() {
    let text = "Can you look into this customer's problem?\n\n\
---------- Forwarded message ---------\nFrom: Ana Lima <ana@example.com>\n\
Date: Mon, Jun 3, 2024 at 10:00 AM\nSubject: Broken item\nTo: <shop@brand.com>\n\nHello,\n";
    assert_eq!(
        stripped_reply(text),
        "Can you look into this customer's problem?"
    );
    let text = "FYI\n\nBegin forwarded message:\n\nFrom: Ana Lima <ana@example.com>\nSubject: Broken item\n";
    assert_eq!(stripped_reply(text), "FYI");
}

// ---------------------------------------------------------------- stripped_reply: signatures

#[test]
fn signatures() {
    let cases = [
        (
            "Yes, please refund.\n\n-- \nAna Lima\nLima Design\n+33 1 23 45 67 89\n",
            "Yes, please refund.",
        ),
        ("Yes, please refund.\n--\nAna\n", "Yes, please refund."),
        (
            "Yes, please refund.\n\nSent from my iPhone\n",
            "Yes, please refund.",
        ),
        (
            "Oui, remboursez-moi.\n\nEnvoyé de mon iPhone\n",
            "Oui, remboursez-moi.",
        ),
        (
            "Ja, bitte erstatten.\n\nVon meinem iPhone gesendet\n",
            "Ja, bitte erstatten.",
        ),
        (
            "Yes.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n",
            "Yes.",
        ),
        ("Yes.\n\nGet Outlook for Android\n", "Yes."),
        (
            "Yes.\n\nSent from Mail<https://go.microsoft.com/fwlink/?LinkId=550986> for Windows\n",
            "Yes.",
        ),
        ("Yes.\n\nSent from Mail for Windows 10\n", "Yes."),
        ("Sí.\n\nEnviado desde mi iPhone\n", "Sí."),
    ];
    for (text, expected) in cases {
        assert_eq!(stripped_reply(text), expected, "{text:?}");
    }
    // A signature above the quoted history (Thunderbird with the reply on top).
    let text = "Thanks!\n-- \nAna\n\nOn 03/06/2024 10:00, Support wrote:\n> Shipped.\n";
    assert_eq!(stripped_reply(text), "Thanks!");
    // A mobile tagline between the reply and the quote.
    let text = "Ok\n\nSent from my iPhone\n\n> On 3 Jun 2024, at 10:00, Support <s@brand.com> wrote:\n>\n> Shipped.\n";
    assert_eq!(stripped_reply(text), "Ok");
}

// ---------------------------------------------------------------- stripped_reply: edge cases

#[test]
fn quoted_text_only_returns_the_full_text() {
    let text = "\n> Hello,\n> where is my order?\n>\n> Ana\n";
    assert_eq!(stripped_reply(text), text.trim());
    let text = "On Mon, 3 Jun 2024 at 10:00, Ana <ana@example.com> wrote:\n> Hi\n";
    assert_eq!(stripped_reply(text), text.trim());
    let text = "-- \nAna Lima\n";
    assert_eq!(stripped_reply(text), text.trim());
}

#[test]
fn text_without_history_is_only_trimmed() {
    let text = "\n\n  Hello,\n\nMy order #1234 has not arrived.\nFrom: the 3rd of June I have waited.\nOn Monday I wrote:\nplease help.\n\n";
    assert_eq!(stripped_reply(text), text.trim());
}

#[test]
fn inline_answers_keep_the_new_lines() {
    let text = "Hi Bob,\n\n\
On Mon, 3 Jun 2024 at 10:00, Bob <support@brand.com> wrote:\n\
> What is your order number?\n\nIt is #1234.\n\n\
> And which size did you order?\n\nMedium.\n\n\
-- \nAna\n";
    assert_eq!(stripped_reply(text), "Hi Bob,\n\nIt is #1234.\n\nMedium.");
}

#[test]
fn bottom_posting_keeps_the_text_below_the_quote() {
    let text = "Bob <support@brand.com> wrote:\n> Did the replacement arrive?\n\nYes, yesterday. Thank you!\n";
    assert_eq!(stripped_reply(text), "Yes, yesterday. Thank you!");
}

#[test]
fn hostile_inputs_finish() {
    const SIZE: usize = 5 * 1024 * 1024;
    // Five megabytes of quoted lines: nothing new, so the full text comes back.
    let quoted = "> a quoted line\n".repeat(SIZE / 16);
    assert_eq!(stripped_reply(&quoted), quoted.trim());
    // One five-megabyte line of '>'.
    let one_line = ">".repeat(SIZE);
    assert_eq!(stripped_reply(&one_line), one_line);
    // Quotes interleaved with new text on every other line: inline mode over the whole text.
    let interleaved = "> q\nnew\n".repeat(SIZE / 8);
    assert_eq!(stripped_reply(&interleaved).len(), (SIZE / 8) * 4 - 1);
    // Lines that each start a header block that never completes, and attribution look-alikes.
    let headers = "From: a@b.c\nnot a field\n".repeat(SIZE / 24);
    assert_eq!(stripped_reply(&headers), headers.trim());
    let attributions = "On 1 June, I\nwrote: x\n".repeat(SIZE / 22);
    assert_eq!(stripped_reply(&attributions), attributions.trim());
    // A single long line of dashes and one of underscores.
    let dashes = format!("hello\n{}\n", "-".repeat(SIZE));
    assert_eq!(stripped_reply(&dashes), dashes.trim());
    let rule = format!(
        "hello\n{}\nFrom: a@b.c\nTo: x@y.z\nSubject: s\n",
        "_".repeat(SIZE)
    );
    assert_eq!(stripped_reply(&rule), "hello");
}

// ---------------------------------------------------------------- find_inline_forward

fn original(
    address: &str,
    name: Option<&str>,
    subject: Option<&str>,
    date: Option<&str>,
    style: &'static str,
) -> ForwardedOriginal {
    ForwardedOriginal {
        from_address: address.into(),
        from_name: name.map(Into::into),
        subject: subject.map(Into::into),
        date: date.map(Into::into),
        message_id: None,
        style,
    }
}

#[test]
fn gmail_forwards() {
    let text = "Hi team, this customer needs a refund.\n\n\
---------- Forwarded message ---------\n\
From: Ana Lima <Ana.Lima@Example.com>\n\
Date: Mon, Jun 3, 2024 at 10:00\u{202f}AM\n\
Subject: Broken mug\n\
To: <shop@brand.com>\n\n\
Hello, my mug arrived broken.\n";
    assert_eq!(
        find_inline_forward(text),
        Some(original(
            "ana.lima@example.com",
            Some("Ana Lima"),
            Some("Broken mug"),
            Some("Mon, Jun 3, 2024 at 10:00\u{202f}AM"),
            "gmail"
        ))
    );
    let text = "\n\n---------- Message transféré ---------\n\
De\u{a0}: Ana Lima <ana@example.com>\n\
Date\u{a0}: lun. 3 juin 2024 à 10:00\n\
Subject: Tasse cassée\n\
To: <boutique@brand.fr>\n\nBonjour,\n";
    assert_eq!(
        find_inline_forward(text),
        Some(original(
            "ana@example.com",
            Some("Ana Lima"),
            Some("Tasse cassée"),
            Some("lun. 3 juin 2024 à 10:00"),
            "gmail"
        ))
    );
    let text = "---------- Message transféré ---------\nDe : Ana Lima <ana@example.com>\n\
Date : lun. 3 juin 2024 à 10:00\nObjet : Tasse cassée\nÀ : <boutique@brand.fr>\n";
    assert_eq!(
        find_inline_forward(text).and_then(|o| o.subject),
        Some("Tasse cassée".into())
    );
    let text = "Bitte kümmern.\n\n---------- Weitergeleitete Nachricht ---------\n\
Von: Ana Lima <ana@example.com>\nDate: Mo., 3. Juni 2024 um 10:00 Uhr\n\
Subject: Kaputte Tasse\nTo: <shop@brand.de>\n\nHallo,\n";
    let found = find_inline_forward(text).expect("German Gmail forward");
    assert_eq!(found.from_address, "ana@example.com");
    assert_eq!(found.style, "gmail");
    assert_eq!(
        found.date.as_deref(),
        Some("Mo., 3. Juni 2024 um 10:00 Uhr")
    );
}

#[test]
fn outlook_forwards() {
    let text = "Please handle.\n\n-----Original Message-----\n\
From: Ana Lima [mailto:ana@example.com]\n\
Sent: Monday, June 3, 2024 10:00 AM\n\
To: shop@brand.com\n\
Subject: Where is my order?\n\nHi,\n";
    assert_eq!(
        find_inline_forward(text),
        Some(original(
            "ana@example.com",
            Some("Ana Lima"),
            Some("Where is my order?"),
            Some("Monday, June 3, 2024 10:00 AM"),
            "outlook"
        ))
    );
    // Outlook on the web, French, with the rule of underscores.
    let text = "\n\n________________________________\n\
De : Ana Lima <ana@example.com>\n\
Envoyé : lundi 3 juin 2024 10:00\n\
À : boutique@brand.fr <boutique@brand.fr>\n\
Objet : Commande 1234\n\nBonjour,\n";
    assert_eq!(
        find_inline_forward(text),
        Some(original(
            "ana@example.com",
            Some("Ana Lima"),
            Some("Commande 1234"),
            Some("lundi 3 juin 2024 10:00"),
            "outlook"
        ))
    );
    // German and Spanish, a bare address, no rule (Outlook desktop's plain text).
    let text = "Von: ana@example.com\nGesendet: Montag, 3. Juni 2024 10:00\nAn: shop@brand.de\nBetreff: Bestellung\n\nHallo\n";
    assert_eq!(
        find_inline_forward(text),
        Some(original(
            "ana@example.com",
            None,
            Some("Bestellung"),
            Some("Montag, 3. Juni 2024 10:00"),
            "outlook"
        ))
    );
    let text = "Reenvío.\n\n________________________________\nDe: Ana Lima <ana@example.com>\n\
Enviado: lunes, 3 de junio de 2024 10:00\nPara: tienda@brand.es\nAsunto: Pedido\n\nHola\n";
    assert_eq!(
        find_inline_forward(text).map(|o| (o.from_address, o.subject)),
        Some(("ana@example.com".into(), Some("Pedido".into())))
    );
}

#[test]
fn apple_mail_forwards() {
    let text = "See below.\n\nBegin forwarded message:\n\n\
From: Ana Lima <ana@example.com>\n\
Subject: Wrong size\n\
Date: 3 June 2024 at 10:00:00 CEST\n\
To: shop@brand.com\n\nHello,\n";
    assert_eq!(
        find_inline_forward(text),
        Some(original(
            "ana@example.com",
            Some("Ana Lima"),
            Some("Wrong size"),
            Some("3 June 2024 at 10:00:00 CEST"),
            "apple"
        ))
    );
    let text = "Début du message réexpédié\u{a0}:\n\n\
De\u{a0}: Ana Lima <ana@example.com>\n\
Objet\u{a0}: Mauvaise taille\n\
Date\u{a0}: 3 juin 2024 à 10:00:00 UTC+2\n\
À\u{a0}: boutique@brand.fr\n";
    let found = find_inline_forward(text).expect("French Apple Mail forward");
    assert_eq!(found.style, "apple");
    assert_eq!(found.subject.as_deref(), Some("Mauvaise taille"));
}

#[test]
fn thunderbird_forwards() {
    let text = "-------- Forwarded Message --------\n\
Subject: \tRefund request\n\
Date: \tMon, 3 Jun 2024 10:00:00 +0200\n\
From: \tAna Lima <ana@example.com>\n\
To: \tshop@brand.com\n\nHello\n";
    assert_eq!(
        find_inline_forward(text),
        Some(original(
            "ana@example.com",
            Some("Ana Lima"),
            Some("Refund request"),
            Some("Mon, 3 Jun 2024 10:00:00 +0200"),
            "thunderbird"
        ))
    );
    let text = "-------- Message transféré --------\nSujet : Remboursement\n\
Date : Mon, 3 Jun 2024 10:00:00 +0200\nDe : Ana Lima <ana@example.com>\nPour : boutique@brand.fr\n";
    let found = find_inline_forward(text).expect("French Thunderbird forward");
    assert_eq!(found.style, "thunderbird");
    assert_eq!(found.from_address, "ana@example.com");
}

#[test]
fn yahoo_forward() {
    let text = "\n\n----- Forwarded Message -----\nFrom: Ana Lima <ana@example.com>\n\
To: shop@brand.com <shop@brand.com>\nSent: Monday, June 3, 2024, 10:00:00 AM GMT+2\nSubject: Order\n";
    let found = find_inline_forward(text).expect("Yahoo forward");
    assert_eq!(found.style, "yahoo");
    assert_eq!(
        found.date.as_deref(),
        Some("Monday, June 3, 2024, 10:00:00 AM GMT+2")
    );
}

#[test]
fn quoted_block_and_wrapped_values() {
    let text = "> ---------- Forwarded message ---------\n\
> From: \"Lima, Ana Maria\" <\n\
> ana.maria.lima@a-very-long-domain-name.example.com>\n\
> Date: Mon, Jun 3, 2024 at 10:00 AM\n\
> Subject: My order never arrived and I would like to know\n\
> where it is\n\
> To: <shop@brand.com>\n";
    assert_eq!(
        find_inline_forward(text),
        Some(original(
            "ana.maria.lima@a-very-long-domain-name.example.com",
            Some("Lima, Ana Maria"),
            Some("My order never arrived and I would like to know where it is"),
            Some("Mon, Jun 3, 2024 at 10:00 AM"),
            "gmail"
        ))
    );
}

#[test]
fn nested_forwards_return_the_outermost_block() {
    let text = "Again, see below.\n\n---------- Forwarded message ---------\n\
From: Store Owner <owner@brand.com>\nDate: Tue, Jun 4, 2024 at 9:00 AM\nSubject: Fwd: Broken mug\n\
To: <support@brand.com>\n\nFor you.\n\n---------- Forwarded message ---------\n\
From: Ana Lima <ana@example.com>\nDate: Mon, Jun 3, 2024 at 10:00 AM\nSubject: Broken mug\n";
    assert_eq!(
        find_inline_forward(text).map(|o| o.from_address),
        Some("owner@brand.com".into())
    );
    // A block whose From has no address is passed over for the next one.
    let text = "-----Original Message-----\nFrom: Ana Lima\nSent: Monday\nSubject: x\n\n\
---------- Forwarded message ---------\nFrom: Ana Lima <ana@example.com>\n";
    assert_eq!(
        find_inline_forward(text).map(|o| o.from_address),
        Some("ana@example.com".into())
    );
}

#[test]
fn not_forwards() {
    // "From:" used in prose, and a Subject line in prose, but no header block.
    let text = "Hello,\n\nFrom: Monday onwards our shop is closed.\nWe will reopen on the 10th.\n\
Subject: to stock, we ship within 2 days.\n";
    assert_eq!(find_inline_forward(text), None);
    // A forwarded message mentioned in prose.
    let text = "Hi, I forwarded the message to our warehouse.\nThe forwarded message said:\n\
begin forwarded message: nothing more.\nFrom: warehouse team\n";
    assert_eq!(find_inline_forward(text), None);
    // A separator with no sender below it.
    let text = "---------- Forwarded message ---------\n\nHello\n";
    assert_eq!(find_inline_forward(text), None);
    assert_eq!(find_inline_forward(""), None);
}

#[test]
fn hostile_forward_inputs_finish() {
    let many = "---------- Forwarded message ---------\nFrom: nobody\n".repeat(100_000);
    assert_eq!(find_inline_forward(&many), None);
    let long = format!("From: {}\n", "x".repeat(5 * 1024 * 1024));
    assert_eq!(find_inline_forward(&long), None);
    let quotes = ">".repeat(5 * 1024 * 1024);
    assert_eq!(find_inline_forward(&quotes), None);
}

// ---------------------------------------------------------------- find_forwarded_original

fn parse(raw: &str) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(raw.as_bytes())
        .expect("test message parses")
}

#[test]
fn attached_message_rfc822_wins_over_inline_text() {
    let raw = "From: Store Owner <owner@brand.com>\r\n\
To: support-brand@in.postern.example\r\n\
Subject: Fwd: Broken mug\r\n\
Message-ID: <outer-1@brand.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
See the attached mail. An older one:\r\n\
---------- Forwarded message ---------\r\n\
From: Someone Else <else@example.org>\r\n\
\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: attachment; filename=\"Broken mug.eml\"\r\n\
\r\n\
From: =?UTF-8?Q?Ana_Lim=C3=A3?= <Ana@Example.com>\r\n\
To: owner@brand.com\r\n\
Subject: Broken mug\r\n\
Date: Mon, 3 Jun 2024 10:00:00 +0200\r\n\
Message-ID: <CAF=original@mail.example.com>\r\n\
\r\n\
Hello, my mug arrived broken.\r\n\
\r\n\
--outer--\r\n";
    let message = parse(raw);
    assert_eq!(
        find_forwarded_original(&message),
        Some(ForwardedOriginal {
            from_address: "ana@example.com".into(),
            from_name: Some("Ana Limã".into()),
            subject: Some("Broken mug".into()),
            date: Some("Mon, 3 Jun 2024 10:00:00 +0200".into()),
            message_id: Some("CAF=original@mail.example.com".into()),
            style: "rfc822-attachment",
        })
    );
}

#[test]
fn base64_attached_message() {
    // Some clients encode the attached message; mail-parser decodes and parses it.
    let inner =
        "From: ana@example.com\r\nSubject: Hi\r\nMessage-ID: <b64@example.com>\r\n\r\nbody\r\n";
    let encoded = base64_encode(inner.as_bytes());
    let raw = format!(
        "From: owner@brand.com\r\nSubject: Fwd: Hi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nFYI\r\n\
--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b--\r\n"
    );
    let message = parse(&raw);
    let found = find_forwarded_original(&message).expect("attached message");
    assert_eq!(found.from_address, "ana@example.com");
    assert_eq!(found.message_id.as_deref(), Some("b64@example.com"));
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn inline_forward_through_the_parser() {
    // Gmail sends multipart/alternative; the plain part carries the block.
    let raw = "From: Store Owner <owner@brand.com>\r\nSubject: Fwd: Broken mug\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
--alt\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\n\
Please help her.\r\n\r\n---------- Forwarded message ---------\r\n\
From: Ana Lima <ana@example.com>\r\nDate: Mon, Jun 3, 2024 at 10:00 AM\r\n\
Subject: Broken mug\r\nTo: <owner@brand.com>\r\n\r\nHello\r\n\
--alt\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n\r\n<div>Please help her.</div>\r\n--alt--\r\n";
    let found = find_forwarded_original(&parse(raw)).expect("Gmail forward");
    assert_eq!(found.from_address, "ana@example.com");
    assert_eq!(found.style, "gmail");
    assert_eq!(found.message_id, None);
}

#[test]
fn outlook_html_only_forward() {
    // Outlook's HTML: the header block in a bordered div with bold field names.
    let raw = "From: Store Owner <owner@brand.com>\r\nSubject: FW: Order\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n\
<html><body><p>Please check.</p>\
<div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in\">\
<p class=\"MsoNormal\"><b>From:</b> Ana Lima &lt;ana@example.com&gt; <br>\
<b>Sent:</b> Monday, June 3, 2024 10:00 AM<br><b>To:</b> Shop &lt;shop@brand.com&gt;<br>\
<b>Subject:</b> Order</p></div><p>Hello</p></body></html>\r\n";
    let found = find_forwarded_original(&parse(raw)).expect("Outlook HTML forward");
    assert_eq!(found.from_address, "ana@example.com");
    assert_eq!(found.from_name.as_deref(), Some("Ana Lima"));
    assert_eq!(found.subject.as_deref(), Some("Order"));
}

#[test]
fn messages_that_are_not_forwards() {
    let raw = "From: Ana Lima <ana@example.com>\r\nSubject: Question\r\n\r\n\
Hello,\r\nFrom: what I read on your site, the forwarded message option is free?\r\n\
I got a forwarded message from my bank yesterday.\r\n";
    assert_eq!(find_forwarded_original(&parse(raw)), None);
    // A bounce carries the original message too, but it is no forward.
    let raw = "From: MAILER-DAEMON@mx.example.com\r\nSubject: Undelivered Mail\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n\
--r\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n\
--r\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; x@y.z\r\nAction: failed\r\n\r\n\
--r\r\nContent-Type: message/rfc822\r\n\r\nFrom: support@brand.com\r\nSubject: Re: Order\r\n\r\nbody\r\n--r--\r\n";
    assert_eq!(find_forwarded_original(&parse(raw)), None);
}
