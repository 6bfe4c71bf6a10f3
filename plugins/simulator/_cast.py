"""Who the simulated company talks to, and what they say, in five languages.

`make_cast(rng, contacts=…)` draws a company, its own WhatsApp number, a list of contacts and a
couple of groups from the phrase books below. Everything is drawn from the `random.Random`
passed in, in a fixed order, so one seed always gives the same cast. The cast is sized once
(`contacts` ≤ 200, two groups) and never grows while the session runs.
"""

from __future__ import annotations

import functools
import random
import urllib.parse
from collections.abc import Callable, Mapping
from types import MappingProxyType

import attrs

from omnirelay.protocol import ChatKind, ChatRef, Party

__all__ = ["Cast", "Contact", "Group", "PhraseBook", "make_cast", "phrase_book"]


@attrs.frozen(kw_only=True)
class PhraseBook:
    """Names and lines of one language; `numbers` are (prefix, random digits) phone plans."""

    code: str
    numbers: tuple[tuple[str, int], ...]
    companies: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    nicknames: tuple[str, ...]
    incoming: tuple[str, ...]
    replies: tuple[str, ...]
    group_lines: tuple[str, ...]
    corrections: tuple[str, ...]
    captions: tuple[str, ...]
    groups: tuple[str, ...]
    document: str  # file name template with {n}
    added: str  # system notice templates with {actor}, {other}, {title}
    renamed: str
    security: str


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_BOOKS: tuple[PhraseBook, ...] = (
    PhraseBook(
        code="ru",
        numbers=(("7707", 7), ("7701", 7), ("7747", 7), ("7916", 7), ("7985", 7)),
        companies=("Кофейня «Утро» ☕", "Цветы на Абая 💐"),
        first_names=_words(
            "Алексей Ирина Дмитрий Ольга Айгерим Сергей Наталья Тимур Екатерина Павел Асель Михаил"
        ),
        # Russian surnames agree with the first name's gender; these few do not need to.
        last_names=_words(
            "Ким Цой Пак Шевченко Бондаренко Коваленко Ткаченко Мельник Лысенко Кравец"
        ),
        nicknames=("Солнышко мое 😊", "Мама ❤️", "Ирина (бухгалтерия)", "Дмитрий Склад 📦"),
        incoming=(
            "Привет! Как дела?",
            "Здравствуйте, заказ уже отправили? 📦",
            "Добрый день! Можно счёт на оплату?",
            "Спасибо большое, всё получили 🙏",
            "А доставка завтра будет?",
            "Перезвоните мне, пожалуйста, когда сможете",
            "Скиньте, пожалуйста, прайс 😊",
            "Оплатил, чек во вложении",
            "Во сколько вы сегодня работаете?",
            "Ок 👍",
        ),
        replies=(
            "Здравствуйте! Да, заказ уже в пути 🚚",
            "Добрый день! Сейчас проверю и напишу",
            "Счёт отправили на почту 📧",
            "Спасибо, что выбрали нас! 😊",
            "Доставка завтра с 10 до 14",
            "Работаем сегодня до 20:00",
            "Конечно, минуточку",
        ),
        group_lines=(
            "Коллеги, кто сегодня на складе?",
            "Отчёт за неделю готов 📊",
            "Поставка пришла, разгружаем",
            "Всем хорошего дня! ☀️",
            "Не забудьте про планёрку в 10:00",
        ),
        corrections=(
            "Извините, имел в виду завтра, а не сегодня",
            "Поправка: заказ №4821",
            "Привет! Как дела? 😊",
        ),
        captions=("Наш новый ассортимент 🍰", "Утро начинается с кофе ☕", "Скидки до пятницы 🔥"),
        groups=("Склад и логистика 📦", "Поставщики", "Семья ❤️", "Смена выходного дня"),
        document="Счёт №{n}.pdf",
        added="{actor} добавил(а) {other}",
        renamed="{actor} изменил(а) название группы на «{title}»",
        security="Ваш код безопасности с {actor} изменился",
    ),
    PhraseBook(
        code="pt",
        numbers=(("55119", 8), ("55219", 8), ("55319", 8), ("55519", 8), ("351912", 6)),
        companies=("Padaria Estrela", "Açaí da Praia 🌴"),
        first_names=_words(
            "João Maria Lucas Ana Pedro Fernanda Rafael Juliana Thiago Beatriz Gabriel Camila"
        ),
        last_names=_words(
            "Silva Santos Oliveira Souza Pereira Costa Rodrigues Almeida Nascimento Lima"
        ),
        nicknames=(
            "Maria Fernanda 🌻",
            "Lucas - Fornecedor",
            "Vó Lurdes 💕",
            "Seu Zé da Entrega 🛵",
        ),
        incoming=(
            "Oi! Tudo bem?",
            "Bom dia! Vocês entregam hoje? 🛵",
            "Qual o valor do pão de queijo? 🧀",
            "Já fiz o Pix, segue o comprovante",
            "Obrigada pelo atendimento! ❤️",
            "Vocês abrem no domingo?",
            "Pode me mandar o cardápio?",
            "Beleza, combinado 👍",
        ),
        replies=(
            "Olá! Tudo ótimo, e com você? 😊",
            "Bom dia! Entregamos sim, até as 18h",
            "Recebemos o Pix, obrigado! 🙏",
            "Segue o cardápio atualizado 📋",
            "Abrimos domingo das 7h às 13h",
            "Só um minutinho que já verifico",
        ),
        group_lines=(
            "Pessoal, o fornecedor atrasou de novo 😩",
            "Reunião amanhã às 9h, ok?",
            "Batemos a meta do mês! 🎉",
            "Alguém viu a chave do depósito?",
        ),
        corrections=("Corrigindo: a entrega é amanhã 😅", "Desculpa, quis dizer 15h"),
        captions=("Fornada fresquinha saindo agora 🥖", "Promoção de sexta! 🎉"),
        groups=("Equipe Vendas 🇧🇷", "Entregadores 🛵", "Família Silva", "Fornecedores SP"),
        document="Nota fiscal {n}.pdf",
        added="{actor} adicionou {other}",
        renamed='{actor} mudou o nome do grupo para "{title}"',
        security="Seu código de segurança com {actor} mudou",
    ),
    PhraseBook(
        code="en",
        numbers=(("1212", 7), ("1415", 7), ("1617", 7), ("447700", 6), ("44790", 7)),
        companies=("Blue Harbor Bikes", "Maple & Co. Florists 🌷"),
        first_names=_words(
            "Emily James Olivia Michael Sophie Daniel Grace Tom Chloe Ryan Hannah Jack"
        ),
        last_names=_words("Carter Smith Johnson Brown Taylor Wilson Davies Evans Walker Wright"),
        nicknames=("Sarah 🌟", "Tom (Logistics)", "Dad 👨", "Mike – Accounting"),
        incoming=(
            "Hi! Is my order ready for pickup?",
            "Hello, do you have this in blue? 💙",
            "Thanks a lot, got it! 🙌",
            "Can I change the delivery address?",
            "What time do you close today?",
            "Sounds good 👍",
            "I'd like to book a repair for Saturday 🚲",
        ),
        replies=(
            "Hi! Yes, it's ready, see you soon 😊",
            "Let me check and get back to you in a minute",
            "Sure, send me the new address 📍",
            "We're open until 7 pm today",
            "Booked for Saturday at 10 am ✅",
            "Thank you! Have a great day ☀️",
        ),
        group_lines=(
            "Morning team! Standup in 5 ⏰",
            "Shipment delayed until Monday 😕",
            "Great job on the launch everyone 🚀",
            "Who's covering the front desk after lunch?",
        ),
        corrections=("Sorry, I meant Sunday, not Saturday", "Correction: order #5530"),
        captions=("New arrivals this week 🚴", "Sunset ride 🌅"),
        groups=("Ops team 🚀", "Suppliers EU", "Weekend riders 🚴", "Front desk"),
        document="Invoice {n}.pdf",
        added="{actor} added {other}",
        renamed='{actor} changed the group name to "{title}"',
        security="Your security code with {actor} changed",
    ),
    PhraseBook(
        code="es",
        numbers=(("346", 8), ("34722", 6), ("52155", 8), ("54911", 8), ("57310", 7)),
        companies=("Clínica Dental Sonrisa 🦷", "Taquería El Güero 🌮"),
        first_names=_words(
            "Carlos Lucía Javier Sofía Diego Valentina Andrés Camila Miguel Martina Pablo Daniela"
        ),
        last_names=_words(
            "Gómez Martínez López García Fernández Ruiz Hernández Díaz Torres Ramírez"
        ),
        nicknames=("Lucía Martínez 💃", "Javier - Ventas", "Abuela Carmen 👵", "Dr. Ruiz 🩺"),
        incoming=(
            "¡Hola! ¿Tienen turno para mañana? 🦷",
            "Buenas tardes, ¿cuánto cuesta la limpieza?",
            "¡Muchas gracias! 😊",
            "¿Puedo cambiar mi cita al jueves?",
            "Ya llegué, estoy en la recepción",
            "Perfecto, nos vemos 👋",
        ),
        replies=(
            "¡Hola! Sí, tenemos turno a las 11:30 ✅",
            "La limpieza cuesta 45 €, ¿te la reservo?",
            "Claro, te cambio la cita al jueves a las 17h",
            "¡Gracias a ti! Que tengas buen día 🌞",
            "Un momento, por favor, ya te confirmo",
        ),
        group_lines=(
            "Chicos, hoy cerramos a las 19h",
            "¿Alguien puede cubrir el turno del sábado? 🙏",
            "¡Feliz cumple, Lucía! 🎂🎉",
        ),
        corrections=("Perdón, quise decir el viernes", "Corrijo: la cita es a las 16:30"),
        captions=("Nuestro equipo 💙", "¡Sonríe! 😁"),
        groups=("Soporte LATAM", "Clínica – turnos", "Amigos del pádel 🎾", "Proveedores"),
        document="Factura {n}.pdf",
        added="{actor} añadió a {other}",
        renamed='{actor} cambió el nombre del grupo a "{title}"',
        security="Tu código de seguridad con {actor} cambió",
    ),
    PhraseBook(
        code="de",
        numbers=(("49151", 8), ("49160", 8), ("49176", 8), ("43664", 7), ("4179", 7)),
        companies=("Bäckerei Sonnenschein 🥨", "Fahrradladen Müller"),
        first_names=_words("Lukas Anna Felix Lena Jonas Marie Paul Sophie Leon Mia Jürgen Hanna"),
        last_names=_words(
            "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schäfer Köhler"
        ),
        nicknames=("Oma Gisela 🌸", "Jürgen (Lager)", "Schatz ❤️", "Frau Köhler – Buchhaltung"),
        incoming=(
            "Hallo! Ist meine Bestellung schon unterwegs? 📦",
            "Guten Morgen, haben Sie heute geöffnet?",
            "Vielen Dank, alles angekommen! 🙏",
            "Kann ich den Termin auf Freitag verschieben?",
            "Passt, bis später 👋",
        ),
        replies=(
            "Hallo! Ja, das Paket ist heute rausgegangen 🚚",
            "Guten Morgen! Wir haben bis 18 Uhr geöffnet",
            "Gern geschehen, schönen Tag noch ☀️",
            "Freitag 14 Uhr ist eingetragen ✅",
            "Einen Moment bitte, ich schaue nach",
        ),
        group_lines=(
            "Wer übernimmt morgen die Frühschicht?",
            "Die Lieferung ist da, bitte auspacken 📦",
            "Schönes Wochenende euch allen! 🎉",
        ),
        corrections=("Korrektur: Termin ist um 15 Uhr", "Sorry, ich meinte Donnerstag"),
        captions=("Frische Brezeln aus dem Ofen 🥨", "Unser neues Schaufenster ✨"),
        groups=("Lager Team", "Lieferanten DE", "Stammtisch 🍺", "Filiale Mitte"),
        document="Rechnung {n}.pdf",
        added="{actor} hat {other} hinzugefügt",
        renamed="{actor} hat den Gruppennamen zu „{title}“ geändert",
        security="Deine Sicherheitsnummer mit {actor} hat sich geändert",
    ),
)

_BY_CODE: Mapping[str, PhraseBook] = MappingProxyType({book.code: book for book in _BOOKS})

REACTIONS: tuple[str, ...] = ("👍", "❤️", "😂", "😮", "😢", "🙏", "🎉", "🔥")

# A group JID is "120363" and twelve more digits, as WhatsApp hands them out today.
_GROUP_PREFIX = "120363"


def phrase_book(code: str) -> PhraseBook:
    """The phrase book for a language code ("ru", "pt", "en", "es", "de"); KeyError otherwise."""
    return _BY_CODE[code]


@attrs.define(eq=False)
class Contact:
    """A person the company chats with; `name` changes when the contact renames itself."""

    jid: str
    phone: str
    name: str
    lang: str

    def party(self) -> Party:
        return Party(id=self.jid, phone=self.phone, name=self.name)

    def chat(self) -> ChatRef:
        return ChatRef(id=self.jid, kind=ChatKind.DIRECT, title=self.name)


@attrs.define(eq=False)
class Group:
    """A WhatsApp group; `title` changes when a member renames it."""

    jid: str
    title: str
    lang: str
    members: tuple[Contact, ...]

    def chat(self) -> ChatRef:
        return ChatRef(id=self.jid, kind=ChatKind.GROUP, title=self.title)


@attrs.frozen(kw_only=True)
class Cast:
    """The company (the session's own account), its contacts and its groups."""

    company: str
    lang: str
    me: Party
    contacts: tuple[Contact, ...]
    groups: tuple[Group, ...]


def make_cast(
    rng: random.Random, *, contacts: int, phone: str | None = None, name: str | None = None
) -> Cast:
    """Draw a company with `contacts` contacts and two groups.

    `phone` (digits) and `name` keep the session's known number and display name; otherwise
    both are drawn too.
    """
    home = rng.choice(_BOOKS)
    company = rng.choice(home.companies)
    used_numbers: set[str] = set()
    own = phone if phone else _phone_number(rng, home, used_numbers)
    used_numbers.add(own)
    me = Party(id=f"{own}@c.us", phone=f"+{own}", name=name or company, is_me=True)

    used_names: set[str] = set()
    people = []
    for _ in range(contacts):
        # Half the customers speak the company's language; the rest are tourists and expats.
        book = home if rng.random() < 0.5 else rng.choice(_BOOKS)
        number = _phone_number(rng, book, used_numbers)
        used_numbers.add(number)
        person = _person_name(rng, book, used_names)
        used_names.add(person)
        people.append(
            Contact(jid=f"{number}@c.us", phone=f"+{number}", name=person, lang=book.code)
        )

    staff_lang = home
    partner_lang = rng.choice(_BOOKS)
    groups = []
    used_group_ids: set[str] = set()
    used_titles: set[str] = set()
    for book in (staff_lang, partner_lang):
        group_id = _unique(used_group_ids, lambda: _GROUP_PREFIX + _digits(rng, 12))
        used_group_ids.add(group_id)
        title = _unique(used_titles, functools.partial(rng.choice, book.groups))
        used_titles.add(title)
        size = min(len(people), rng.randint(3, 6))
        # People who speak the group's language first, in random order, then anyone.
        ranked = sorted((p.lang != book.code, rng.random(), i) for i, p in enumerate(people))
        members = tuple(people[i] for _, _, i in ranked[:size])
        groups.append(Group(jid=f"{group_id}@g.us", title=title, lang=book.code, members=members))
    return Cast(
        company=company, lang=home.code, me=me, contacts=tuple(people), groups=tuple(groups)
    )


def avatar_data_url(name: str, rng: random.Random) -> str:
    """A small SVG avatar (initials on a coloured disc) as a data: URL: no network needed."""
    initials = "".join(word[0] for word in name.split() if word[:1].isalpha())[:2].upper() or "?"
    hue = rng.randrange(360)
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96">'
        f'<circle cx="48" cy="48" r="48" fill="hsl({hue},55%,55%)"/>'
        '<text x="48" y="60" font-family="sans-serif" font-size="36" fill="#fff" '
        f'text-anchor="middle">{_xml_escape(initials)}</text></svg>'
    )
    return "data:image/svg+xml," + urllib.parse.quote(svg)


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def _phone_number(rng: random.Random, book: PhraseBook, used: set[str]) -> str:
    prefix, count = rng.choice(book.numbers)
    # A subscriber number never starts with 0 after the prefixes above.
    return _unique(used, lambda: prefix + rng.choice("23456789") + _digits(rng, count - 1))


def _person_name(rng: random.Random, book: PhraseBook, used: set[str]) -> str:
    def draw() -> str:
        if rng.random() < 0.15:
            return rng.choice(book.nicknames)
        return f"{rng.choice(book.first_names)} {rng.choice(book.last_names)}"

    for _ in range(20):
        candidate = draw()
        if candidate not in used:
            return candidate
    # 200 contacts from one language can exhaust the pairs; people do share names.
    return f"{rng.choice(book.first_names)} {rng.choice(book.last_names)} {len(used) + 1}"


def _unique(used: set[str], draw: Callable[[], str]) -> str:
    while True:
        candidate = draw()
        if candidate not in used:
            return candidate
