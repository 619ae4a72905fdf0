#!/usr/bin/env python3
"""Generates a realistic threaded support mailbox for the import benchmark.

The mailbox of the customer care of an e-commerce store (support@shop.example): conversations
of 1 to 8 messages between customers (many domains, languages and mail clients) and the
brand, written twice with the same messages, as an mboxrd file and as a Maildir, plus
expected.json, what an import of it should find.

    bench/gen_mailbox.py --out DIR [--seed 1] [--messages 100000 | --small]

Deterministic: the same seed, size and end date give byte-identical files. Streaming: messages
are rendered and written one at a time in date order; only the conversations still open (a
few weeks of the timeline) are held in memory, never the message bytes.

What is in it (shares are of messages unless said otherwise):
- conversations of 1-8 messages: the customer asks, the brand answers from
  support@shop.example, the customer answers back; follow-ups, brand-initiated conversations,
  customers forwarding an order confirmation (Fwd:/WG:/TR:), colleagues in Cc who reply;
- Message-ID / In-Reply-To / References chains, with the variations of real clients (only
  In-Reply-To, only References, truncated References, reply prefixes of many languages:
  Re:, RE:, AW:, SV:, Réf:, TR:, 回复:, stacked "RE: AW:"), about 2% of customer replies
  with no threading header at all (same customer, same subject: subject fallback), about 1%
  of replies stored before their parent in the file, a few first messages replying to an
  order confirmation that is not in the mailbox;
- Date headers over two years (ending at --end-date) in the sender's time zone, increasing in
  file order except early replies, duplicates and a few senders with a wrong clock;
- text/plain (7bit, 8bit, quoted-printable, base64, format=flowed), multipart/alternative
  with HTML, UTF-8 / ISO-8859-1 / Windows-1252 bodies, RFC 2047 encoded-words (UTF-8 and
  ISO-8859-1, Q and B) in names and subjects, RFC 2231 attachment names;
- attachments (photos, PDFs: random bytes in base64) sized so that a message averages
  about 10 KB;
- auto-replies (Auto-Submitted: auto-replied: the brand's acknowledgement, customers' out of
  office), delivery status notifications (multipart/report, RFC 3464) for a few brand
  answers sent to a dead address, carrying the original headers;
- malformed entries that an importer must quarantine (no From, a From with no address,
  a garbage header block) and exact duplicates (the same bytes twice).

expected.json: counts (messages = entries in the mbox = files in the Maildir, duplicates,
malformed, ...), the Message-IDs of the duplicates, the malformed entries with their kind,
and "conversations": one list of Message-IDs (in date order) per conversation, every unique
well-formed message exactly once; bounces belong to the conversation of the message they
report on.
"""

import argparse
import base64
import datetime as dt
import heapq
import json
import os
import quopri
import random
import re
import sys
import time

GENERATOR_VERSION = 1
BRAND_ADDRESS = "support@shop.example"
BRAND_NAME = "Shop Example"
SMALL_MESSAGES = 2000

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

# --- people -------------------------------------------------------------------------------

LOCALES = {
    # locale: weight, first names, last names, free-mail domains, usual UTC offsets (minutes)
    "en": (40, ["James", "Mary", "Olivia", "Liam", "Emma", "Noah", "Sophie", "Jack", "Grace", "Harry",
                "Amelia", "Oscar", "Chloe", "Ethan", "Zoë", "Seán", "Siobhán"],
           ["Smith", "Johnson", "Brown", "Taylor", "Wilson", "Evans", "Walker", "O'Brien", "Murphy",
            "Clarke", "Hughes", "Patel", "Khan", "Wright"],
           ["gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "icloud.com", "aol.com",
            "btinternet.com", "comcast.net"], [0, 60, -300, -240, -480, -420]),
    "de": (15, ["Jürgen", "Anna", "Lukas", "Sophie", "Björn", "Jörg", "Maximilian", "Lea", "Günther",
                "Katrin", "Felix", "Hannah"],
           ["Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Becker", "Schäfer", "Koch",
            "Groß", "Hoffmann", "Krüger"],
           ["web.de", "gmx.de", "gmx.net", "t-online.de", "posteo.de", "gmail.com", "freenet.de"],
           [60, 120]),
    "fr": (15, ["Élodie", "François", "Camille", "Hélène", "Jérôme", "Léa", "Mathieu", "Chloé",
                "Sébastien", "Amélie", "Noël"],
           ["Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Girard", "Lefebvre", "Rousseau",
            "Mercier", "Bérard"],
           ["orange.fr", "free.fr", "laposte.net", "sfr.fr", "wanadoo.fr", "gmail.com",
            "hotmail.fr"], [60, 120]),
    "es": (6, ["José", "María", "Lucía", "Álvaro", "Iñigo", "Sofía", "Javier", "Martín"],
           ["García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Núñez", "Ibáñez"],
           ["gmail.com", "hotmail.es", "yahoo.es", "telefonica.net"], [60, 120]),
    "sv": (6, ["Åsa", "Björn", "Linnéa", "Göran", "Ingrid", "Måns", "Elsa", "Sören"],
           ["Andersson", "Johansson", "Karlsson", "Nilsson", "Lindqvist", "Åberg", "Sjöberg"],
           ["telia.com", "bredband.net", "gmail.com", "hotmail.se", "spray.se"], [60, 120]),
    "it": (6, ["Giulia", "Luca", "Niccolò", "Chiara", "Matteo", "Francesca", "Nicolò"],
           ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci"],
           ["libero.it", "virgilio.it", "tiscali.it", "alice.it", "gmail.com"], [60, 120]),
    "nl": (6, ["Daan", "Sanne", "Sem", "Fleur", "Bram", "Eva", "Jeroen", "Iris"],
           ["de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit"],
           ["ziggo.nl", "kpnmail.nl", "gmail.com", "hotmail.nl", "xs4all.nl"], [60, 120]),
    "zh": (6, ["伟", "芳", "娜", "敏", "静", "磊"], ["王", "李", "张", "刘", "陈", "杨"],
           ["qq.com", "163.com", "126.com", "sina.com", "gmail.com"], [480]),
}
LOCALE_NAMES = list(LOCALES)
LOCALE_WEIGHTS = [LOCALES[k][0] for k in LOCALE_NAMES]
ASCII_NAMES = {"zh": ["Wei Wang", "Fang Li", "Na Zhang", "Min Liu", "Jing Chen", "Lei Yang"]}

COMPANY_WORDS = ["nord", "wind", "berg", "atelier", "maison", "blue", "river", "stone", "alpha",
                 "delta", "verde", "sol", "mar", "tech", "handel", "design", "studio", "bureau",
                 "casa", "oak", "pine", "lumen", "kraft", "forma"]
COMPANY_TLDS = ["example", "example.com", "example.net", "example.org", "test"]

AGENTS = [("Clara", "Clara Dupont"), ("Tom", "Tom Becker"), ("Inès", "Inès Haddad"),
          ("Marcus", "Marcus Lindgren"), ("Priya", "Priya Nair"), ("Jonas", "Jonas Weber")]

REPLY_PREFIX = {"en": "Re: ", "de": "AW: ", "fr": "Réf: ", "es": "RE: ", "sv": "SV: ",
                "it": "R: ", "nl": "Re: ", "zh": "回复: "}
# Subject fallback replies only use prefixes every normaliser knows (DESIGN.md threading).
FALLBACK_PREFIX = {"en": "Re: ", "de": "AW: ", "fr": "Réf: ", "es": "RE: ", "sv": "SV: ",
                   "it": "Re: ", "nl": "Re: ", "zh": "回复: "}
FORWARD_PREFIX = {"en": "Fwd: ", "de": "WG: ", "fr": "TR: ", "es": "RV: ", "sv": "VB: ",
                  "it": "I: ", "nl": "Fwd: ", "zh": "转发: "}

PRODUCTS = ["linen shirt", "wool scarf", "ceramic mug set", "leather wallet", "running shoes",
            "desk lamp", "cotton bedsheets", "rain jacket", "backpack", "espresso cups",
            "yoga mat", "sunglasses", "kids' raincoat", "cast-iron pan", "bluetooth speaker"]
CARRIERS = ["DHL", "UPS", "Colissimo", "PostNL", "GLS", "DPD", "Royal Mail", "PostNord"]

# Customer openings per locale: subject, body. {order} {product} {carrier} {days} {amount}.
ASKS = {
    "en": [("Where is my order #{order}?",
            "I ordered the {product} {days} days ago (order #{order}) and the tracking page has not\n"
            "moved since. Could you tell me when it will arrive?"),
           ("Damaged item in order {order}",
            "The {product} arrived today but it is damaged: the box was crushed and the item is\n"
            "scratched. I attach a photo. Can you send a replacement or a refund?"),
           ("Refund request - order {order}",
            "I returned the {product} two weeks ago with {carrier} and I still have not received\n"
            "my refund of {amount} EUR. From the tracking it was delivered to you on Monday."),
           ("Question", "Do you ship to Canada? And is the {product} available in blue?"),
           ("Wrong size", "I received the {product} in the wrong size (order {order}). How do I\n"
            "exchange it? I'd prefer not to pay the return shipping.")],
    "de": [("Wo bleibt meine Bestellung {order}?",
            "ich habe vor {days} Tagen das Produkt \"{product}\" bestellt (Bestellnummer {order}),\n"
            "aber die Sendungsverfolgung von {carrier} zeigt seit Tagen nichts Neues. Können Sie\n"
            "bitte nachsehen?"),
           ("Rücksendung und Erstattung {order}",
            "ich möchte den Artikel zurückschicken und bitte um Erstattung von {amount} EUR.\n"
            "Wie gehe ich vor? Grüße aus München."),
           ("Frage zur Lieferung", "Liefern Sie auch nach Österreich? Wie hoch sind die Versandkosten?")],
    "fr": [("Commande {order} non reçue",
            "j'ai commandé le produit « {product} » il y a {days} jours (commande n°{order}) et je\n"
            "n'ai toujours rien reçu. Le suivi {carrier} n'a pas bougé depuis."),
           ("Demande de remboursement {order}",
            "Le produit est arrivé abîmé. Je souhaite un remboursement de {amount} € ou un échange.\n"
            "Vous trouverez une photo en pièce jointe."),
           ("Question sur ma facture", "Pourriez-vous m'envoyer la facture de la commande {order} ?\n"
            "J'en ai besoin pour ma comptabilité.")],
    "es": [("Pedido {order} retrasado",
            "hice el pedido {order} hace {days} días y todavía no ha llegado. ¿Podrían revisar\n"
            "el envío con {carrier}?"),
           ("Devolución del pedido {order}", "Quiero devolver el producto, la talla no es correcta.\n"
            "¿Cómo solicito el reembolso de {amount} €?")],
    "sv": [("Min beställning {order}", "jag beställde {product} för {days} dagar sedan men har inte\n"
            "fått något. Spårningen hos {carrier} säger ingenting. Kan ni hjälpa mig?"),
           ("Återbetalning {order}", "Varan var trasig när den kom. Jag vill ha pengarna tillbaka,\n"
            "{amount} kr. Tack på förhand.")],
    "it": [("Ordine {order} non arrivato", "ho ordinato {product} {days} giorni fa (ordine {order}) ma\n"
            "non è ancora arrivato. Il tracciamento {carrier} è fermo. Potete verificare?"),
           ("Rimborso ordine {order}", "Il prodotto è arrivato danneggiato, vorrei il rimborso di\n"
            "{amount} euro. Grazie.")],
    "nl": [("Bestelling {order} niet ontvangen", "ik heb {days} dagen geleden {product} besteld\n"
            "(bestelling {order}) maar nog niets ontvangen. Kunt u dit nagaan bij {carrier}?"),
           ("Retour {order}", "Het product past niet. Hoe kan ik het retourneren en krijg ik\n"
            "{amount} euro terug?")],
    "zh": [("订单 {order} 还没有收到", "您好，我在{days}天前下了订单 {order}，但是到现在还没有收到。\n"
            "请帮我查一下物流 {carrier}。谢谢！"),
           ("退款申请 {order}", "商品有损坏，我想申请退款 {amount} 欧元。附件是照片。")],
}
FOLLOWUPS = {
    "en": ["Thanks for your quick answer. I checked again and nothing has changed.",
           "Any news on this? It has been three days.",
           "From what I can see on the {carrier} site, the parcel is back at the depot.\n"
           "From now on I'd rather pick it up myself, is that possible?",
           "OK, I sent the photos you asked for. The order number is {order}.",
           "Perfect, thank you very much! Problem solved."],
    "de": ["Vielen Dank für die schnelle Antwort. Leider hat sich nichts geändert.",
           "Gibt es schon Neuigkeiten? Ich warte seit drei Tagen.",
           "Super, vielen Dank! Das Paket ist heute angekommen."],
    "fr": ["Merci pour votre réponse. Malheureusement rien n'a changé depuis.",
           "Avez-vous des nouvelles ? Cela fait trois jours.",
           "Parfait, merci beaucoup ! Le colis est arrivé ce matin."],
    "es": ["Gracias por la respuesta. Todavía no ha cambiado nada.", "¡Perfecto, muchas gracias!"],
    "sv": ["Tack för snabbt svar. Tyvärr har inget hänt.", "Perfekt, tack så mycket!"],
    "it": ["Grazie per la risposta. Purtroppo non è cambiato nulla.", "Perfetto, grazie mille!"],
    "nl": ["Bedankt voor uw snelle antwoord. Er is helaas niets veranderd.", "Top, hartelijk dank!"],
    "zh": ["谢谢您的回复。物流信息还是没有更新。", "收到了，非常感谢！"],
}
GREET = {"en": "Hello,", "de": "Guten Tag,", "fr": "Bonjour,", "es": "Hola:", "sv": "Hej,",
         "it": "Buongiorno,", "nl": "Goedendag,", "zh": "您好，"}
CLOSE = {"en": "Best regards,", "de": "Mit freundlichen Grüßen", "fr": "Cordialement,",
         "es": "Un saludo,", "sv": "Med vänliga hälsningar", "it": "Cordiali saluti,",
         "nl": "Met vriendelijke groet,", "zh": "谢谢"}
BRAND_ANSWERS = {
    "en": ["Thank you for contacting {brand}. I checked order #{order}: the parcel was handed to\n"
           "{carrier} on {shipdate} and is on its way; tracking number {tracking}. It should reach\n"
           "you within {days} working days.",
           "I'm sorry to hear the {product} arrived damaged. I have started a replacement at no\n"
           "cost and attached a prepaid return label: please drop the parcel at any {carrier}\n"
           "point within 14 days.",
           "Your refund of {amount} EUR was issued today to your original payment method. Depending\n"
           "on your bank it can take 3 to 5 working days to appear on your statement.",
           "Could you send us a photo of the item and of the shipping label? That will let us\n"
           "open a claim with {carrier} right away."],
    "de": ["vielen Dank für Ihre Nachricht. Ihre Bestellung {order} wurde am {shipdate} an {carrier}\n"
           "übergeben (Sendungsnummer {tracking}). Die Zustellung sollte in {days} Werktagen erfolgen.",
           "die Erstattung von {amount} EUR wurde heute veranlasst. Je nach Bank dauert die\n"
           "Gutschrift 3 bis 5 Werktage."],
    "fr": ["merci pour votre message. Votre commande {order} a été remise à {carrier} le {shipdate}\n"
           "(numéro de suivi {tracking}). La livraison est prévue sous {days} jours ouvrés.",
           "nous avons procédé au remboursement de {amount} € sur votre moyen de paiement. Le délai\n"
           "de traitement bancaire est de 3 à 5 jours ouvrés."],
}
BRAND_OPENERS = [("Your order #{order} is delayed",
                  "We are sorry: the {product} from your order #{order} is out of stock at our\n"
                  "warehouse. It will ship on {shipdate}. If you prefer, reply to this message and we\n"
                  "will refund you in full."),
                 ("Action needed: your return {order}",
                  "We received your return for order #{order} but the parcel was empty. Could you\n"
                  "check with {carrier} and send us the drop-off receipt?")]
CONFIRMATIONS = {"en": "Your order #{order} has shipped", "de": "Ihre Bestellung {order} wurde versandt",
                 "fr": "Votre commande {order} a été expédiée"}
OOO = {"en": ("Out of office", "I am out of the office until {date} with limited access to email.\n"
              "For urgent matters please call my mobile."),
       "de": ("Abwesenheitsnotiz", "Ich bin bis zum {date} nicht im Büro und habe keinen Zugriff auf\n"
              "meine E-Mails. Ihre Nachricht wird nicht weitergeleitet."),
       "fr": ("Absence du bureau", "Je suis absent jusqu'au {date} et je n'ai pas accès à mes e-mails.")}
ACK = ("We received your request [#{ref}]",
       "Thank you for writing to {brand} customer care. This is an automatic acknowledgement:\n"
       "your request has the reference {ref} and an agent will answer within one working day.\n\n"
       "Please do not change the subject when you reply.")

# Mail clients: Message-ID style, body layout, encodings.
CLIENTS = ["gmail", "outlook", "apple", "thunderbird", "mobile", "webmail"]
CLIENT_WEIGHTS = [34, 24, 14, 10, 10, 8]
USER_AGENT = {"outlook": ("X-Mailer", "Microsoft Outlook 16.0"),
              "apple": ("X-Mailer", "Apple Mail (2.3774.500.171.1.1)"),
              "thunderbird": ("User-Agent", "Mozilla Thunderbird"),
              "mobile": ("X-Mailer", "Mail for Android"),
              "webmail": ("User-Agent", "Roundcube Webmail/1.6.6")}


# --- encodings -------------------------------------------------------------------------------

def enc_word(text, charset, mode):
    """RFC 2047 encoded-words of whole characters, each at most ~60 characters long."""
    words, cur, cur_len = [], [], 0
    for ch in text:
        raw = ch.encode(charset)
        if mode == "B":
            piece, size = raw, len(raw) * 4 / 3
        else:
            piece = "".join(chr(b) if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122) else
                            "_" if b == 32 else f"={b:02X}" for b in raw)
            size = len(piece)
        if cur and cur_len + size > 45:
            words.append(cur)
            cur, cur_len = [], 0
        cur.append(piece)
        cur_len += size
    if cur:
        words.append(cur)
    if mode == "B":
        out = [f"=?{charset}?B?{base64.b64encode(b''.join(w)).decode()}?=" for w in words]
    else:
        out = [f"=?{charset}?Q?{''.join(w)}?=" for w in words]
    return "\n ".join(out)


def header_text(text, style):
    """A header value: ASCII as is, else encoded-words in the client's style."""
    if all(ord(c) < 128 for c in text):
        return text
    if style == "latin1":
        try:
            text.encode("iso-8859-1")
            return enc_word(text, "ISO-8859-1", "Q")
        except UnicodeEncodeError:
            pass
    return enc_word(text, "UTF-8", "B" if style == "b" else "Q")


def display_name(name, style):
    if all(ord(c) < 128 for c in name):
        if re.search(r"[^A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]", name):
            return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return name
    return header_text(name, style)


def mailbox(name, address, style):
    return f"{display_name(name, style)} <{address}>" if name else address


def fold(name, items):
    """name: item item ... folded before 78 columns."""
    lines, line = [], f"{name}:"
    for item in items:
        if len(line) + 1 + len(item) > 78 and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + item
    lines.append(line)
    return "\n".join(lines)


def qp(text_bytes):
    return quopri.encodestring(text_bytes).decode("ascii")


def b64(data):
    return base64.encodebytes(data).decode("ascii")


def fmt_date(ts, offset_min):
    t = dt.datetime.fromtimestamp(ts, dt.timezone.utc) + dt.timedelta(minutes=offset_min)
    sign = "+" if offset_min >= 0 else "-"
    o = abs(offset_min)
    return (f"{DAYS[t.weekday()]}, {t.day:02d} {MONTHS[t.month - 1]} {t.year} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} {sign}{o // 60:02d}{o % 60:02d}")


def asctime(ts):
    t = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return f"{DAYS[t.weekday()]} {MONTHS[t.month - 1]} {t.day:2d} {t.hour:02d}:{t.minute:02d}:{t.second:02d} {t.year}"


def brand_offset(ts):
    """Europe/Paris, roughly: summer time from April to October."""
    return 120 if 4 <= dt.datetime.fromtimestamp(ts, dt.timezone.utc).month <= 10 else 60


# --- model -----------------------------------------------------------------------------------

class Person:
    __slots__ = ("name", "first", "address", "locale", "client", "style", "tz", "colleague")


class Msg:
    """One message of a conversation, decided when the conversation is created."""
    __slots__ = ("conv", "idx", "kind", "author", "to", "cc", "ts", "date_ts", "tz", "mid",
                 "subject", "irt", "refs", "text", "attach", "parent", "fallback", "early",
                 "client", "style")


class Conversation:
    __slots__ = ("cid", "customer", "msgs", "order", "base_subject")


class Generator:
    def __init__(self, seed, messages, end):
        self.seed = seed
        self.rng = random.Random(f"postern-bench/{seed}")
        self.n_total = messages
        self.end_ts = end
        self.start_ts = end - 730 * 86400
        self.customers = []
        self.last_subject = {}  # (customer address, base subject) -> last time, for collisions
        self.order_seq = 100000
        self.mid_seen = set()
        self.stats = dict(auto_replies=0, bounces=0, subject_fallback=0, early_replies=0,
                          attachments=0, unknown_parent=0, clock_skew=0)

    # people ----------------------------------------------------------------------------------
    def new_customer(self, rng):
        p = Person()
        loc = rng.choices(LOCALE_NAMES, LOCALE_WEIGHTS)[0]
        _, firsts, lasts, domains, tzs = LOCALES[loc]
        first, last = rng.choice(firsts), rng.choice(lasts)
        p.locale, p.first = loc, first
        p.name = f"{last}{first}" if loc == "zh" else f"{first} {last}"
        if loc == "zh" and rng.random() < 0.5:
            p.name = rng.choice(ASCII_NAMES["zh"])
        if rng.random() < 0.12:
            p.name = ""  # bare address
        ascii_first = ascii_fold(first) or "user"
        ascii_last = ascii_fold(last) or "mail"
        n = rng.randrange(1, 999)
        local = rng.choice([f"{ascii_first}.{ascii_last}", f"{ascii_first}{ascii_last}{n}",
                            f"{ascii_first[0]}.{ascii_last}", f"{ascii_last}.{ascii_first}{n % 100}",
                            f"{ascii_first}_{n}"]).lower().replace(" ", "").replace("'", "")
        if loc == "zh" and rng.random() < 0.6:
            local = str(rng.randrange(10000000, 3999999999))
        if rng.random() < 0.22:
            domain = (rng.choice(COMPANY_WORDS) + rng.choice(["", "-"]) + rng.choice(COMPANY_WORDS)
                      + "." + rng.choice(COMPANY_TLDS))
        else:
            domain = rng.choice(domains)
        p.colleague = None
        p.address = f"{local}@{domain}"
        p.client = rng.choices(CLIENTS, CLIENT_WEIGHTS)[0]
        p.style = rng.choice(["q", "q", "b", "latin1"])
        p.tz = rng.choice(tzs)
        if "example" in domain and rng.random() < 0.5:
            c = Person()
            cf = rng.choice(firsts)
            c.first, c.locale, c.client, c.style, c.tz = cf, loc, p.client, p.style, p.tz
            c.name = f"{cf} {rng.choice(lasts)}"
            c.address = f"{(ascii_fold(cf) or 'team').lower()}.{rng.randrange(10, 99)}@{domain}"
            c.colleague = None
            p.colleague = c
        return p

    # conversations ---------------------------------------------------------------------------
    def new_mid(self, rng, person, ts):
        while True:
            if person is None or person.address == BRAND_ADDRESS:
                mid = f"<CA{rand_b64(rng, 40)}@mail.gmail.com>"
            else:
                c = person.client
                dom = person.address.split("@", 1)[1]
                if c == "gmail":
                    mid = f"<CA{rand_b64(rng, 38)}@mail.gmail.com>"
                elif c == "outlook":
                    host = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(20))
                    mid = f"<{host}{rng.randrange(10**6):06d}@{host[:8]}.eurprd0{rng.randrange(1, 9)}.prod.outlook.com>"
                elif c == "apple":
                    mid = f"<{rand_uuid(rng).upper()}@{dom}>"
                elif c == "thunderbird":
                    mid = f"<{rand_uuid(rng)}@{dom}>"
                elif c == "mobile":
                    mid = f"<{int(ts * 1000)}.{rng.randrange(10**9)}@{dom}>"
                else:
                    mid = f"<{rand_hex(rng, 32)}@{dom}>"
            if mid not in self.mid_seen:
                self.mid_seen.add(mid)
                return mid

    def make_conversation(self, cid, size, t0, bounce):
        rng = random.Random(f"postern-bench/{self.seed}/conv/{cid}")
        if self.customers and rng.random() < 0.3:
            customer = rng.choice(self.customers)
        else:
            customer = self.new_customer(rng)
            self.customers.append(customer)
        conv = Conversation()
        conv.cid, conv.customer, conv.msgs = cid, customer, []
        self.order_seq += rng.randrange(1, 7)
        order = f"{self.order_seq}"
        conv.order = order
        loc = customer.locale
        vars_ = dict(order=order, product=rng.choice(PRODUCTS), carrier=rng.choice(CARRIERS),
                     days=rng.randrange(2, 15), amount=f"{rng.randrange(900, 25000) / 100:.2f}",
                     tracking=f"{rng.choice(['JD', '1Z', '3S', 'CB'])}{rng.randrange(10**11):011d}",
                     shipdate=fmt_date(t0 - rng.randrange(1, 6) * 86400, 0)[5:16], brand=BRAND_NAME)

        # Who writes each message.
        start = rng.random()
        opener = "customer"
        if start < 0.05:
            opener = "brand_open"
        elif start < 0.10:
            opener = "forward"
        roles = [opener]
        for i in range(1, size):
            prev = roles[-1]
            customer_side = prev in ("customer", "forward", "ooo", "followup", "colleague")
            if customer_side:
                if i == 1 and prev in ("customer", "forward") and rng.random() < 0.12:
                    roles.append("ack")
                elif prev not in ("ooo",) and rng.random() < 0.08:
                    roles.append("followup")
                else:
                    roles.append("brand")
            else:  # brand, ack, brand_open
                if prev == "ack":
                    roles.append("brand")
                elif prev == "brand" and rng.random() < 0.04 and loc in OOO:
                    roles.append("ooo")
                elif customer.colleague and rng.random() < 0.3:
                    roles.append("colleague")
                else:
                    roles.append("customer")
        if bounce:  # the brand's last answer went to a dead address
            roles[-2:] = ["brand", "bounce"]

        # Subject.
        if opener == "brand_open":
            subject, body = rng.choice(BRAND_OPENERS)
        elif opener == "forward":
            subject = CONFIRMATIONS.get(loc, CONFIRMATIONS["en"])
            body = None
        else:
            subject, body = rng.choice(ASKS[loc])
        base = subject.format(**vars_)
        key = (customer.address, base)
        if key in self.last_subject and t0 - self.last_subject[key] < 45 * 86400:
            base = f"{base} ({order})"
        conv.base_subject = base

        t = t0
        for i, role in enumerate(roles):
            m = Msg()
            m.conv, m.idx, m.kind, m.fallback, m.early = conv, i, role, False, False
            m.attach = None
            # A reply answers the last message a person wrote, not an auto-reply.
            m.parent = None
            for prev in reversed(conv.msgs):
                if prev.kind not in ("ack", "ooo", "bounce") or role in ("ooo", "bounce"):
                    m.parent = prev
                    break
            if i >= 3 and role in ("customer", "colleague") and rng.random() < 0.05 \
                    and conv.msgs[i - 3].kind == "brand":
                m.parent = conv.msgs[i - 3]  # answers an older message of the thread
            # time
            if i:
                if role in ("ack", "ooo"):
                    t += rng.uniform(2, 40)
                elif role == "bounce":
                    t += rng.uniform(3, 90)
                elif role == "brand":
                    t += rng.choice([rng.uniform(600, 7200), rng.uniform(3600, 86400),
                                     rng.uniform(86400, 2 * 86400)])
                else:
                    t += rng.choice([rng.uniform(300, 3600), rng.uniform(3600, 86400),
                                     rng.uniform(86400, 4 * 86400)])
            m.ts = t
            m.date_ts = t
            # author
            if role in ("brand", "ack", "brand_open"):
                m.author, m.to = None, customer
                m.tz = brand_offset(t)
                m.client, m.style = "gmail", "q"
            elif role == "bounce":
                m.author, m.to = "bounce", None
                m.tz, m.client, m.style = brand_offset(t), "mta", "q"
            else:
                who = customer.colleague if role == "colleague" else customer
                m.author, m.to = who, None
                m.tz, m.client, m.style = who.tz, who.client, who.style
                if rng.random() < 0.006:
                    m.date_ts = t + rng.choice([-1, 1]) * rng.uniform(3600, 86400)
                    self.stats["clock_skew"] += 1
            m.cc = [customer.colleague] if (customer.colleague and role == "customer" and i == 0) else []
            m.mid = self.new_mid(rng, m.author if isinstance(m.author, Person) else None, t)
            if role == "bounce":
                m.mid = f"<{rand_hex(rng, 16)}.{rand_hex(rng, 8)}@smtp.shop.example>"
            # threading headers
            p = m.parent
            m.irt, m.refs = None, []
            if p is not None:
                chain = (p.refs or ([p.irt] if p.irt else [])) + [p.mid]
                u = rng.random()
                if role == "bounce":
                    pass  # a DSN names the original only in its returned headers
                elif role == "ooo":
                    m.irt = p.mid
                elif role in ("customer", "followup") and i >= 1 and u < 0.025:
                    m.fallback = True
                    self.stats["subject_fallback"] += 1
                elif u < 0.08:
                    m.irt = p.mid
                elif u < 0.12:
                    m.refs = chain
                elif u < 0.15 and len(chain) > 3:
                    m.irt, m.refs = p.mid, [chain[0]] + chain[-2:]
                else:
                    m.irt, m.refs = p.mid, chain
            elif opener == "customer" and rng.random() < 0.02:
                m.irt = f"<order-{order}.{rand_hex(rng, 12)}@orders.shop.example>"
                m.refs = [m.irt]
                self.stats["unknown_parent"] += 1
            # subject
            if i == 0:
                m.subject = (FORWARD_PREFIX[loc] + base) if opener == "forward" else base
            elif role == "ack":
                m.subject = ACK[0].format(ref=rand_hex(rng, 6).upper()) + " " + base
            elif role == "ooo":
                m.subject = f"{OOO[loc][0]}: {p.subject}"
            elif role == "bounce":
                m.subject = "Undelivered Mail Returned to Sender"
            else:
                if m.fallback:
                    prefix = FALLBACK_PREFIX[loc]
                elif role in ("brand",):
                    prefix = "Re: "
                else:
                    prefix = REPLY_PREFIX[loc] if rng.random() < 0.8 else "RE: "
                if m.fallback or rng.random() < 0.75:
                    m.subject = prefix + base
                else:
                    parent_subject = p.subject if p.kind not in ("ack", "ooo") else base
                    m.subject = prefix + parent_subject  # Outlook stacks prefixes
            # text
            m.text = self.compose_text(rng, conv, m, role, body if i == 0 else None, vars_)
            # attachments: photos from customers, PDFs (labels, invoices) from the brand
            if role in ("customer", "colleague", "forward") and rng.random() < 0.13:
                m.attach = ("photo", rng.randrange(20000, 90000))
            elif role == "brand" and rng.random() < 0.09:
                m.attach = ("pdf", rng.randrange(15000, 70000))
            if m.attach:
                self.stats["attachments"] += 1
            if role in ("ack", "ooo"):
                self.stats["auto_replies"] += 1
            if role == "bounce":
                self.stats["bounces"] += 1
            if i and not m.fallback and role not in ("bounce", "ack", "ooo") and rng.random() < 0.01:
                m.early = True
                self.stats["early_replies"] += 1
            conv.msgs.append(m)
        self.last_subject[key] = conv.msgs[-1].ts
        return conv

    def compose_text(self, rng, conv, m, role, body, v):
        loc = conv.customer.locale
        cust = conv.customer
        if role in ("customer", "followup", "colleague", "forward"):
            who = cust.colleague if role == "colleague" else cust
            if role == "forward":
                ship = fmt_date(m.ts - rng.randrange(2, 9) * 86400, 60)
                inner = (f"---------- Forwarded message ---------\nFrom: {BRAND_NAME} <noreply@shop.example>\n"
                         f"Date: {ship}\nSubject: {conv.base_subject}\nTo: <{cust.address}>\n\n"
                         f"Hello {cust.first},\n\nGood news: your order #{v['order']} is on its way with "
                         f"{v['carrier']}.\nTracking number: {v['tracking']}\n\n"
                         + "\n".join(f"  1 x {rng.choice(PRODUCTS):<24} {rng.randrange(900, 9000) / 100:8.2f} EUR"
                                     for _ in range(rng.randrange(1, 5)))
                         + "\n\nThank you for shopping with us.\n")
                core = "Hello, see below: this was supposed to arrive last week. Where is it?\n\n" + inner
            elif body is not None:
                core = GREET[loc] + "\n\n" + body.format(**v) + "\n\n" + CLOSE[loc] + "\n" + (who.name or who.first)
            else:
                core = rng.choice(FOLLOWUPS[loc]).format(**v) + "\n\n" + (who.first or "")
            if rng.random() < 0.03:
                core += "\n>From the order page I copied this line, in case it helps.\n"
            if who.client == "mobile":
                core += "\n\nSent from my phone"
            return core
        if role == "ack":
            return ACK[1].format(ref=rand_hex(rng, 6).upper(), brand=BRAND_NAME)
        if role == "ooo":
            return OOO[loc][1].format(date=fmt_date(m.ts + 10 * 86400, 0)[5:16])
        if role == "bounce":
            return ""
        agent = AGENTS[conv.cid % len(AGENTS)]
        if role == "brand_open":
            _, text = BRAND_OPENERS[0] if conv.base_subject.startswith("Your") else BRAND_OPENERS[1]
            return f"Hello {cust.first},\n\n{text.format(**v)}\n\n{agent[0]}\n{BRAND_NAME} customer care"
        answers = BRAND_ANSWERS.get(loc, BRAND_ANSWERS["en"])
        hello = {"de": "Guten Tag", "fr": "Bonjour"}.get(loc, "Hello")
        sign = {"de": "Viele Grüße", "fr": "Bien cordialement"}.get(loc, "Kind regards")
        return (f"{hello} {cust.first},\n\n{rng.choice(answers).format(**v)}\n\n{sign},\n{agent[1]}\n"
                f"{BRAND_NAME} customer care\nhttps://shop.example/help")


def ascii_fold(s):
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue",
                           "é": "e", "è": "e", "ê": "e", "ë": "e", "É": "E", "à": "a", "â": "a",
                           "á": "a", "Á": "A", "í": "i", "ó": "o", "ú": "u", "ñ": "n", "ç": "c",
                           "å": "a", "Å": "A", "ò": "o", "ì": "i", "ô": "o", "î": "i", "ï": "i"})
    return "".join(c for c in s.translate(table) if c.isascii() and (c.isalnum() or c in " .-"))


def rand_hex(rng, n):
    return f"{rng.getrandbits(4 * n):0{n}x}"


def rand_uuid(rng):
    h = rand_hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


B64CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_-"


def rand_b64(rng, n):
    return "".join(rng.choice(B64CHARS) for _ in range(n))


# --- rendering -------------------------------------------------------------------------------

def full_text(m):
    """The message's text with the quoted history of its parent, as a client writes it."""
    if m.kind in ("ack", "ooo", "bounce") or m.parent is None:
        return m.text
    p = m.parent
    if p.kind == "bounce":
        return m.text
    if m.kind == "brand" or m.client in ("gmail", "webmail", "mobile", "apple", "thunderbird"):
        name = BRAND_NAME if p.author is None else (p.author.name or p.author.address)
        addr = BRAND_ADDRESS if p.author is None else p.author.address
        attribution = f"On {fmt_date(p.ts, m.tz)[:-6]}, {name} <{addr}> wrote:"
    else:
        attribution = "-----Original Message-----"
    quoted = full_text(p)
    if len(quoted) > 6000:
        quoted = quoted[:6000] + "\n[...]"
    return m.text + "\n\n" + attribution + "\n" + "\n".join(("> " + line) if line else ">" for line in quoted.split("\n"))


def html_of(text, rng, heavy):
    esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    paras = "".join(f"<p>{p.replace(chr(10), '<br>')}</p>\n" for p in esc.split("\n\n"))
    if heavy:  # Outlook's HTML: styles and wrappers
        return ('<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>\n'
                '<style><!--\n@font-face {font-family:"Cambria Math";}\n'
                'p.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0cm; font-size:11.0pt;'
                ' font-family:"Calibri",sans-serif;}\na:link, span.MsoHyperlink {color:#0563C1;'
                ' text-decoration:underline;}\n.MsoChpDefault {mso-style-type:export-only;}\n'
                '@page WordSection1 {size:612.0pt 792.0pt; margin:72.0pt 72.0pt 72.0pt 72.0pt;}\n'
                'div.WordSection1 {page:WordSection1;}\n--></style></head>\n'
                '<body lang="EN-US" link="#0563C1" vlink="#954F72"><div class="WordSection1">\n'
                + paras.replace("<p>", '<p class="MsoNormal">') + "</div></body></html>\n")
    return f'<div dir="ltr">{paras}</div>\n'


def text_part(text, m, rng, html=False):
    """(headers, body) of one text part, encoded the way the author's client does."""
    ctype = "text/html" if html else "text/plain"
    client = m.client
    data_is_ascii = text.isascii()
    if client == "mobile" or (client == "webmail" and rng.random() < 0.3):
        return f'Content-Type: {ctype}; charset="UTF-8"\nContent-Transfer-Encoding: base64\n', \
            b64(text.encode("utf-8"))
    if client == "outlook":
        cs = "iso-8859-1"
        try:
            raw = text.encode("iso-8859-1")
        except UnicodeEncodeError:
            try:
                raw, cs = text.encode("windows-1252"), "windows-1252"
            except UnicodeEncodeError:
                raw, cs = text.encode("utf-8"), "utf-8"
        if data_is_ascii and not html:
            cs = "us-ascii"
        return f'Content-Type: {ctype}; charset="{cs}"\nContent-Transfer-Encoding: quoted-printable\n', \
            qp(raw)
    if client == "thunderbird" and not html:
        if data_is_ascii:
            return "Content-Type: text/plain; charset=UTF-8; format=flowed\nContent-Transfer-Encoding: 7bit\n", text
        return "Content-Type: text/plain; charset=UTF-8; format=flowed\nContent-Transfer-Encoding: 8bit\n", text
    if data_is_ascii and not html:
        return f'Content-Type: {ctype}; charset="UTF-8"\n', text
    return f'Content-Type: {ctype}; charset="UTF-8"\nContent-Transfer-Encoding: quoted-printable\n', \
        qp(text.encode("utf-8"))


def boundary(rng):
    return f"{rand_hex(rng, 28)}"


def attachment(kind, size, rng, loc):
    if kind == "photo":
        name = rng.choice([f"IMG_{rng.randrange(1000, 9999)}.jpg", f"photo-{rng.randrange(100)}.jpg",
                           "Foto Schaden.jpg" if loc == "de" else "image0.jpeg", "Rückseite.jpg" if loc == "de" else "damage.jpg"])
        data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + rng.randbytes(size) + b"\xff\xd9"
        ctype = "image/jpeg"
    else:
        name = rng.choice(["invoice.pdf", "return-label.pdf", "facture.pdf", "Rücksendeetikett.pdf"])
        data = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
                b"4 0 obj\n<< /Length " + str(size).encode() + b" /Filter /FlateDecode >>\nstream\n"
                + rng.randbytes(size) + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")
        ctype = "application/pdf"
    if name.isascii():
        disp = f'attachment; filename="{name}"'
        ct = f'{ctype}; name="{name}"'
    else:
        from urllib.parse import quote
        disp = f"attachment; filename*=UTF-8''{quote(name)}"
        ct = f"{ctype}; name*=UTF-8''{quote(name)}"
    return f"Content-Type: {ct}\nContent-Disposition: {disp}\nContent-Transfer-Encoding: base64\n", b64(data)


def render(m, seed):
    """The bytes of one message (LF line endings), from its own random stream."""
    rng = random.Random(f"postern-bench/{seed}/msg/{m.conv.cid}/{m.idx}")
    conv = m.conv
    cust = conv.customer
    h = []
    if m.kind == "bounce":
        return render_bounce(m, rng)
    brand_side = m.author is None
    sender = None if brand_side else m.author
    from_ = mailbox(BRAND_NAME, BRAND_ADDRESS, "q") if brand_side else mailbox(sender.name, sender.address, sender.style)
    to = mailbox(cust.name, cust.address, cust.style) if brand_side else \
        mailbox(BRAND_NAME + " Support" if rng.random() < 0.5 else "", BRAND_ADDRESS, "q")
    style = "q" if brand_side else sender.style
    # trace headers, as the support mailbox's provider adds them
    if not brand_side:
        dom = sender.address.split("@", 1)[1]
        h.append(f"Return-Path: <{sender.address}>")
        h.append(f"Delivered-To: {BRAND_ADDRESS}")
        mx = f"mail-{rng.randrange(100)}.{dom}"
        h.append(f"Received: from {mx} ({mx} "
                 f"[{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}])\n"
                 f"\tby mx.shop.example (Postfix) with ESMTPS id {rand_hex(rng, 10).upper()}\n"
                 f"\tfor <{BRAND_ADDRESS}>; {fmt_date(m.ts + rng.uniform(1, 20), 0)}")
        if rng.random() < 0.7:
            h.append(f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={dom}; s=s{rng.randrange(1, 4)};\n"
                     f"\tt={int(m.ts)}; h=from:to:subject:date:message-id:mime-version;\n"
                     f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};\n"
                     "\tb=" + "\n\t  ".join(base64.b64encode(rng.randbytes(256)).decode()[i:i + 64]
                                            for i in range(0, 344, 64)))
    h.append(f"From: {from_}")
    h.append(f"To: {to}")
    if m.cc:
        h.append("Cc: " + ", ".join(mailbox(c.name, c.address, c.style) for c in m.cc))
    h.append(f"Subject: {header_text(m.subject, style)}")
    h.append(f"Date: {fmt_date(m.date_ts, m.tz)}")
    h.append(f"Message-ID: {m.mid}")
    if m.irt:
        h.append(f"In-Reply-To: {m.irt}")
    if m.refs:
        h.append(fold("References", m.refs))
    if m.kind in ("ack", "ooo"):
        h.append("Auto-Submitted: auto-replied")
        if m.kind == "ooo" and rng.random() < 0.5:
            h.append("X-Autoreply: yes")
        if m.kind == "ack":
            h.append("Precedence: auto_reply")
    if sender is not None and sender.client in USER_AGENT:
        h.append("%s: %s" % USER_AGENT[sender.client])
    if brand_side and m.kind == "brand":
        h.append(f"X-Helpdesk-Agent: {AGENTS[conv.cid % len(AGENTS)][1].split()[0].lower()}")
    if m.client == "outlook":
        h.append(f"Thread-Topic: {header_text(conv.base_subject, style)}")
        h.append(f"Thread-Index: {base64.b64encode(rng.randbytes(22)).decode()}")
        h.append(f"Content-Language: {cust.locale}-{cust.locale.upper() if cust.locale != 'en' else 'US'}")
    h.append("MIME-Version: 1.0")

    text = full_text(m)
    want_html = m.client in ("gmail", "outlook", "apple", "webmail") and m.kind not in ("ooo",) \
        and not (m.client == "apple" and rng.random() < 0.5)
    if want_html:
        th, tb = text_part(text, m, rng)
        hh, hb = text_part(html_of(text, rng, m.client == "outlook"), m, rng, html=True)
        bd = boundary(rng)
        body_headers = f'Content-Type: multipart/alternative; boundary="{bd}"\n'
        body = f"--{bd}\n{th}\n{tb.rstrip(chr(10))}\n--{bd}\n{hh}\n{hb.rstrip(chr(10))}\n--{bd}--\n"
    else:
        body_headers, body = text_part(text, m, rng)
    if m.attach:
        ah, ab = attachment(m.attach[0], m.attach[1], rng, cust.locale)
        bd = "----=_Part_" + boundary(rng)
        head = f'Content-Type: multipart/mixed; boundary="{bd}"\n'
        body = (f"This is a multi-part message in MIME format.\n\n--{bd}\n{body_headers}\n{body.rstrip(chr(10))}\n"
                f"--{bd}\n{ah}\n{ab.rstrip(chr(10))}\n--{bd}--\n")
        body_headers = head
    # Headers are ASCII (encoded-words); bodies are ASCII (QP, base64) or 8bit UTF-8.
    return ("\n".join(h) + "\n" + body_headers + "\n" + body.rstrip("\n") + "\n").encode("utf-8")


def render_bounce(m, rng):
    conv = m.conv
    orig = m.parent
    cust = conv.customer
    bd = f"{rand_hex(rng, 10).upper()}.{int(m.ts)}/smtp.shop.example"
    queue = rand_hex(rng, 10).upper()
    dom = cust.address.split("@", 1)[1]
    diag = rng.choice([f"550 5.1.1 <{cust.address}>: Recipient address rejected: User unknown in virtual mailbox table",
                       f"552 5.2.2 <{cust.address}>: mailbox full",
                       f"550 5.1.1 The email account that you tried to reach does not exist."])
    status = diag.split()[1]
    orig_headers = (f"Return-Path: <{BRAND_ADDRESS}>\nFrom: {mailbox(BRAND_NAME, BRAND_ADDRESS, 'q')}\n"
                    f"To: {mailbox(cust.name, cust.address, cust.style)}\nSubject: {header_text(orig.subject, 'q')}\n"
                    f"Date: {fmt_date(orig.date_ts, orig.tz)}\nMessage-ID: {orig.mid}\n"
                    + (f"In-Reply-To: {orig.irt}\n" if orig.irt else "") + "MIME-Version: 1.0\n")
    head = (f"Return-Path: <>\nDelivered-To: {BRAND_ADDRESS}\n"
            f"Received: by smtp.shop.example (Postfix)\n\tid {queue}; {fmt_date(m.ts, 0)}\n"
            f"Date: {fmt_date(m.date_ts, m.tz)}\nFrom: MAILER-DAEMON@smtp.shop.example (Mail Delivery System)\n"
            f"Subject: {m.subject}\nTo: {BRAND_ADDRESS}\nAuto-Submitted: auto-replied\n"
            f"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;\n"
            f'\tboundary="{bd}"\nContent-Transfer-Encoding: 8bit\nMessage-Id: {m.mid}\n')
    body = (f"This is a MIME-encapsulated message.\n\n--{bd}\nContent-Description: Notification\n"
            f"Content-Type: text/plain; charset=us-ascii\n\nThis is the mail system at host smtp.shop.example.\n\n"
            f"I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. "
            f"It's attached below.\n\n                   The mail system\n\n<{cust.address}>: host mx.{dom}[192.0.2.{rng.randrange(1, 255)}] said:\n"
            f"    {diag} (in reply to RCPT TO command)\n\n--{bd}\nContent-Description: Delivery report\n"
            f"Content-Type: message/delivery-status\n\nReporting-MTA: dns; smtp.shop.example\nX-Postfix-Queue-ID: {queue}\n"
            f"X-Postfix-Sender: rfc822; {BRAND_ADDRESS}\nArrival-Date: {fmt_date(orig.ts, 0)}\n\n"
            f"Final-Recipient: rfc822; {cust.address}\nOriginal-Recipient: rfc822;{cust.address}\nAction: failed\n"
            f"Status: {status}\nRemote-MTA: dns; mx.{dom}\nDiagnostic-Code: smtp; {diag}\n\n"
            f"--{bd}\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
            f"{orig_headers}\n--{bd}--\n")
    return (head + "\n" + body).encode("utf-8")


MALFORMED_KINDS = ["no_from", "from_without_address", "garbage_header"]


def render_malformed(kind, index, ts, seed):
    rng = random.Random(f"postern-bench/{seed}/malformed/{index}")
    mid = f"<{rand_hex(rng, 24)}@broken.example>"
    date = fmt_date(ts, 0)
    text = ("This message lost its sender somewhere in an old export.\n"
            "Order 99999, please call me back.\n")
    if kind == "no_from":
        raw = f"To: {BRAND_ADDRESS}\nSubject: Help with my order\nDate: {date}\nMessage-ID: {mid}\n\n{text}"
    elif kind == "from_without_address":
        raw = (f"From: undisclosed-recipients:;\nTo: {BRAND_ADDRESS}\nSubject: Invoice\nDate: {date}\n"
               f"Message-ID: {mid}\n\n{text}")
    else:
        # Not a header block at all: binary junk and lines without a colon, no From anywhere.
        return (b"\x1b[0m\x8f\xfe corrupted export block " + rand_hex(rng, 8).encode()
                + b"\nSubject Order question\n\xff\xfe ]]]] \x7f\x7f\nDate " + date.encode()
                + b"\n\n" + text.encode()), None
    return raw.encode("utf-8"), mid


# --- writing ---------------------------------------------------------------------------------

MBOXRD_FROM = re.compile(rb"^(>*From )", re.M)


class Writer:
    def __init__(self, out):
        self.out = out
        self.mbox = open(os.path.join(out, "mailbox.mbox"), "wb", buffering=1 << 20)
        self.maildir = os.path.join(out, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(self.maildir, sub), exist_ok=True)
        self.count = 0
        self.bytes = 0
        self.mbox_bytes = 0

    def write(self, raw, envelope, ts, new, flags):
        line = f"From {envelope} {asctime(ts)}\n".encode()
        escaped = MBOXRD_FROM.sub(rb">\1", raw)
        self.mbox.write(line)
        self.mbox.write(escaped)
        self.mbox.write(b"\n")
        self.mbox_bytes += len(line) + len(escaped) + 1
        name = f"{int(ts)}.M{self.count % 1000000:06d}P{4000 + self.count // 1000000}Q{self.count}.bench.shop.example"
        path = os.path.join(self.maildir, "new" if new else "cur", name if new else f"{name}:2,{flags}")
        with open(path, "wb") as f:
            f.write(raw)
        self.count += 1
        self.bytes += len(raw)

    def close(self):
        self.mbox.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory to write mailbox.mbox, Maildir/, expected.json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--messages", type=int, default=100000, help="entries in the mailbox (default 100000)")
    ap.add_argument("--small", action="store_true", help=f"{SMALL_MESSAGES} messages, for quick runs")
    ap.add_argument("--end-date", default="2026-11-01", help="date of the newest message (YYYY-MM-DD)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    n = SMALL_MESSAGES if a.small else a.messages
    if n < 50:
        ap.error("--messages must be at least 50")
    end = dt.datetime.strptime(a.end_date, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp()
    if os.path.exists(os.path.join(a.out, "expected.json")) or os.path.exists(os.path.join(a.out, "Maildir")):
        sys.exit(f"{a.out} already holds a mailbox: give an empty or new directory")
    os.makedirs(a.out, exist_ok=True)
    t_start = time.monotonic()

    g = Generator(a.seed, n, end)
    rng = g.rng
    n_malformed = max(5, n // 2000)
    n_dup = max(5, n // 1000)
    n_conv_msgs = n - n_malformed - n_dup
    sizes = []
    weights = [18, 30, 20, 12, 8, 5, 4, 3]
    left = n_conv_msgs
    while left > 0:
        s = min(left, rng.choices(range(1, 9), weights)[0])
        sizes.append(s)
        left -= s
    n_conv = len(sizes)
    bounce_convs = set(rng.sample([i for i, s in enumerate(sizes) if s >= 3], max(3, n // 1500)))
    malformed_at = dict(zip(sorted(rng.sample(range(n_conv), n_malformed)),
                            [MALFORMED_KINDS[i % len(MALFORMED_KINDS)] for i in range(n_malformed)]))
    dup_convs = set(rng.sample(range(n_conv), n_dup))
    # Conversation start times: spread over the two years, more on weekdays and in the daytime.
    # Conversations last up to a few weeks: they start in the first 700 days.
    span_days = 700
    writer = Writer(a.out)
    heap = []  # (file key, sequence, kind, payload)
    seq = 0
    conversations = []
    duplicates, malformed = [], []
    new_cutoff = g.start_ts + (span_days - 3) * 86400  # the last days are still unread

    def emit(item):
        key, _, kind, payload = item
        if kind == "malformed":
            raw, mid = render_malformed(payload[0], payload[1], key, g.seed)
            malformed.append({"kind": payload[0], "message_id": mid, "index": writer.count})
            writer.write(raw, "MAILER-DAEMON", key, False, "S")
            return
        m = payload
        raw = render(m, g.seed)
        if kind == "dup":
            duplicates.append(m.mid)
        envelope = "MAILER-DAEMON" if m.kind == "bounce" else (BRAND_ADDRESS if m.author is None else m.author.address)
        flags = "S" if m.author is None or m.kind in ("ack", "bounce") else rng_flags(m)
        writer.write(raw, envelope, key, key >= new_cutoff and isinstance(m.author, Person), flags)

    def rng_flags(m):
        r = (m.idx * 7919 + m.conv.cid) % 100
        return "FS" if r < 2 else "RS" if r < 40 else "S"

    for cid, size in enumerate(sizes):
        day = (cid + rng.random()) * span_days / n_conv
        day_start = g.start_ts + int(day) * 86400
        hour = rng.choices(range(24), [1, 1, 1, 1, 1, 2, 4, 7, 10, 11, 11, 10, 9, 10, 10, 10, 9, 8, 8, 8, 7, 5, 3, 2])[0]
        t0 = day_start + hour * 3600 + rng.uniform(0, 3600) - 3600
        while heap and heap[0][0] < day_start - 86400 * 1.5:
            emit(heapq.heappop(heap))
        conv = g.make_conversation(cid, size, t0, cid in bounce_convs)
        conversations.append([m.mid for m in conv.msgs])
        for m in conv.msgs:
            key = m.ts
            if m.early:
                key = m.parent.ts - rng.uniform(1, 600)
            heapq.heappush(heap, (key, seq, "msg", m))
            seq += 1
        if cid in dup_convs:
            m = conv.msgs[rng.randrange(len(conv.msgs))]
            heapq.heappush(heap, (m.ts + rng.uniform(1, 3 * 86400), seq, "dup", m))
            seq += 1
        if cid in malformed_at:
            heapq.heappush(heap, (t0 + rng.uniform(0, 86400), seq, "malformed", (malformed_at[cid], cid)))
            seq += 1
        if not a.quiet and cid % 2000 == 0 and cid:
            print(f"  {writer.count} messages, {writer.bytes / 1e6:.0f} MB", file=sys.stderr)
    while heap:
        emit(heapq.heappop(heap))
    writer.close()

    expected = {
        "generator_version": GENERATOR_VERSION,
        "seed": a.seed,
        "end_date": a.end_date,
        "support_address": BRAND_ADDRESS,
        "messages": writer.count,
        "unique_messages": writer.count - len(duplicates) - len(malformed),
        "duplicates": len(duplicates),
        "malformed": len(malformed),
        "conversation_count": len(conversations),
        "mbox_bytes": writer.mbox_bytes,
        "message_bytes": writer.bytes,
        "maildir_new": len(os.listdir(os.path.join(writer.maildir, "new"))),
        "stats": g.stats,
        "duplicate_message_ids": duplicates,
        "malformed_messages": malformed,
        "conversations": conversations,
    }
    assert writer.count == n, (writer.count, n)
    assert sum(len(c) for c in conversations) == expected["unique_messages"]
    with open(os.path.join(a.out, "expected.json.tmp"), "w") as f:
        json.dump(expected, f, indent=0, ensure_ascii=False)
    os.rename(os.path.join(a.out, "expected.json.tmp"), os.path.join(a.out, "expected.json"))
    if not a.quiet:
        print(f"{writer.count} messages ({len(conversations)} conversations, {len(duplicates)} duplicates, "
              f"{len(malformed)} malformed), {writer.bytes / 1e6:.1f} MB, "
              f"{time.monotonic() - t_start:.1f} s -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
