"""Folding of the quote headers and closing lines that mail clients write, per client and language.

Each case is one small reply: the new text, then the client's quote header and the quoted message
as that client lays them out in English, German, French, Spanish, Dutch, Italian, Portuguese,
Polish and Russian. The dates and names are made up.
"""

from __future__ import annotations

import pytest

from channels.email.quotes import split_reply

LANGUAGES = ("en", "de", "fr", "es", "nl", "it", "pt", "pl", "ru")

REPLIES = {
    "en": "Thanks, that fixed it.\nBest, Anna",
    "de": "Danke, jetzt geht es.\nViele Grüße, Anna",
    "fr": "Merci, ça marche.\nCordialement, Anna",
    "es": "Gracias, ya funciona.\nSaludos, Anna",
    "nl": "Bedankt, het werkt nu.\nGroeten, Anna",
    "it": "Grazie, ora funziona.\nSaluti, Anna",
    "pt": "Obrigada, já funciona.\nAbraços, Anna",
    "pl": "Dziękuję, już działa.\nPozdrawiam, Anna",
    "ru": "Спасибо, всё работает.\nАнна",
}

ORIGINALS = {
    "en": "Please restart the router.",
    "de": "Bitte starten Sie den Router neu.",
    "fr": "Merci de redémarrer le routeur.",
    "es": "Reinicie el router, por favor.",
    "nl": "Start de router opnieuw op.",
    "it": "Riavvii il router, per favore.",
    "pt": "Reinicie o roteador, por favor.",
    "pl": "Proszę zrestartować router.",
    "ru": "Перезагрузите роутер, пожалуйста.",
}

GMAIL = {
    "en": "On Tue, Mar 3, 2026 at 10:15 AM Support Team <help@example.com> wrote:",
    "de": "Am Di., 3. März 2026 um 10:15 Uhr schrieb Support Team <help@example.com>:",
    "fr": "Le mar. 3 mars 2026 à 10:15, Support Team <help@example.com> a écrit :",
    "es": "El mar, 3 mar 2026 a las 10:15, Support Team (<help@example.com>) escribió:",
    "nl": "Op di 3 mrt 2026 om 10:15 schreef Support Team <help@example.com>:",
    "it": "Il giorno mar 3 mar 2026 alle ore 10:15 Support Team <help@example.com> ha scritto:",
    "pt": "Em ter., 3 de mar. de 2026 às 10:15, Support Team <help@example.com> escreveu:",
    "pl": "wt., 3 mar 2026 o 10:15 Support Team <help@example.com> napisał(a):",
    "ru": "вт, 3 мар. 2026 г. в 10:15, Support Team <help@example.com>:",
}

APPLE_MAIL = {
    "en": "On 3 Mar 2026, at 10:15, Support Team <help@example.com> wrote:",
    "de": "Am 03.03.2026 um 10:15 schrieb Support Team <help@example.com>:",
    "fr": "Le 3 mars 2026 à 10:15, Support Team <help@example.com> a écrit :",
    "es": "El 3 mar 2026, a las 10:15, Support Team <help@example.com> escribió:",
    "nl": "Op 3 mrt 2026 om 10:15 heeft Support Team <help@example.com> het volgende geschreven:",
    "it": "Il giorno 3 mar 2026, alle ore 10:15, Support Team <help@example.com> ha scritto:",
    "pt": "Em 3 de mar. de 2026, à(s) 10:15, Support Team <help@example.com> escreveu:",
    "pl": "Wiadomość napisana przez Support Team <help@example.com> w dniu 03.03.2026, o godz. 10:15:",
    "ru": "3 марта 2026 г., в 10:15, Support Team <help@example.com> написал(а):",
}

APPLE_MAIL_FORWARD = {
    "en": "Begin forwarded message:\n\nFrom: Support Team <help@example.com>\nSubject: Login\nDate: 3 March 2026 at 10:15:00 CET\nTo: Anna <anna@example.com>",
    "de": "Anfang der weitergeleiteten Nachricht:\n\nVon: Support Team <help@example.com>\nBetreff: Login\nDatum: 3. März 2026 um 10:15:00 MEZ\nAn: Anna <anna@example.com>",
    "fr": "Début du message réexpédié :\n\nDe : Support Team <help@example.com>\nObjet : Connexion\nDate : 3 mars 2026 à 10:15:00 UTC+1\nÀ : Anna <anna@example.com>",
    "es": "Inicio del mensaje reenviado:\n\nDe: Support Team <help@example.com>\nAsunto: Acceso\nFecha: 3 de marzo de 2026, 10:15:00 CET\nPara: Anna <anna@example.com>",
    "nl": "Begin doorgestuurd bericht:\n\nVan: Support Team <help@example.com>\nOnderwerp: Inloggen\nDatum: 3 maart 2026 om 10:15:00 CET\nAan: Anna <anna@example.com>",
    "it": "Inizio messaggio inoltrato:\n\nDa: Support Team <help@example.com>\nOggetto: Accesso\nData: 3 marzo 2026, 10:15:00 CET\nA: Anna <anna@example.com>",
    "pt": "Início da mensagem encaminhada:\n\nDe: Support Team <help@example.com>\nAssunto: Acesso\nData: 3 de março de 2026 às 10:15:00 BRT\nPara: Anna <anna@example.com>",
    "pl": "Początek przekazywanej wiadomości:\n\nOd: Support Team <help@example.com>\nTemat: Logowanie\nData: 3 marca 2026 o 10:15:00 CET\nDo: Anna <anna@example.com>",
    "ru": "Начало переадресованного сообщения:\n\nОт: Support Team <help@example.com>\nТема: Вход\nДата: 3 марта 2026 г., 10:15:00 MSK\nКому: Anna <anna@example.com>",
}

THUNDERBIRD = {
    "en": "On 3/3/26 10:15, Support Team wrote:",
    "de": "Am 03.03.26 um 10:15 schrieb Support Team:",
    "fr": "Le 03/03/2026 à 10:15, Support Team a écrit :",
    "es": "El 3/3/26 a las 10:15, Support Team escribió:",
    "nl": "Op 03-03-2026 om 10:15 schreef Support Team:",
    "it": "Il 03/03/26 10:15, Support Team ha scritto:",
    "pt": "Em 03/03/2026 10:15, Support Team escreveu:",
    "pl": "W dniu 3.03.2026 o 10:15, Support Team pisze:",
    "ru": "03.03.2026 10:15, Support Team пишет:",
}

# Outlook's header block (From, Sent, To, Subject) in each language of Outlook for Windows, the web
# and the phone apps.
OUTLOOK_HEADERS = {
    "en": "From: Support Team <help@example.com>\nSent: Tuesday, March 3, 2026 10:15 AM\nTo: Anna <anna@example.com>\nSubject: RE: Login",
    "de": "Von: Support Team <help@example.com>\nGesendet: Dienstag, 3. März 2026 10:15\nAn: Anna <anna@example.com>\nBetreff: AW: Login",
    "fr": "De : Support Team <help@example.com>\nEnvoyé : mardi 3 mars 2026 10:15\nÀ : Anna <anna@example.com>\nObjet : RE: Connexion",
    "es": "De: Support Team <help@example.com>\nEnviado el: martes, 3 de marzo de 2026 10:15\nPara: Anna <anna@example.com>\nAsunto: RE: Acceso",
    "nl": "Van: Support Team <help@example.com>\nVerzonden: dinsdag 3 maart 2026 10:15\nAan: Anna <anna@example.com>\nOnderwerp: RE: Inloggen",
    "it": "Da: Support Team <help@example.com>\nInviato: martedì 3 marzo 2026 10:15\nA: Anna <anna@example.com>\nOggetto: R: Accesso",
    "pt": "De: Support Team <help@example.com>\nEnviada em: terça-feira, 3 de março de 2026 10:15\nPara: Anna <anna@example.com>\nAssunto: RE: Acesso",
    "pl": "Od: Support Team <help@example.com>\nWysłano: wtorek, 3 marca 2026 10:15\nDo: Anna <anna@example.com>\nTemat: RE: Logowanie",
    "ru": "От: Support Team <help@example.com>\nОтправлено: 3 марта 2026 г. 10:15\nКому: Anna <anna@example.com>\nТема: RE: Вход",
}

ORIGINAL_MESSAGE_SEPARATORS = {
    "en": "Original Message",
    "de": "Ursprüngliche Nachricht",
    "fr": "Message d'origine",
    "es": "Mensaje original",
    "nl": "Oorspronkelijk bericht",
    "it": "Messaggio originale",
    "pt": "Mensagem original",
    "pl": "Oryginalna wiadomość",
    "ru": "Исходное сообщение",
}

# Samsung Email puts a Date line where Outlook has Sent.
SAMSUNG_HEADERS = {
    "en": "From: Support Team <help@example.com>\nDate: 03/03/2026 10:15 (GMT+01:00)\nTo: Anna <anna@example.com>\nSubject: Login",
    "de": "Von: Support Team <help@example.com>\nDatum: 03.03.26 10:15 (GMT+01:00)\nAn: Anna <anna@example.com>\nBetreff: Login",
    "fr": "De : Support Team <help@example.com>\nDate : 03/03/2026 10:15 (GMT+01:00)\nÀ : Anna <anna@example.com>\nObjet : Connexion",
    "es": "De: Support Team <help@example.com>\nFecha: 3/3/26 10:15 (GMT+01:00)\nPara: Anna <anna@example.com>\nAsunto: Acceso",
    "nl": "Van: Support Team <help@example.com>\nDatum: 03-03-2026 10:15 (GMT+01:00)\nAan: Anna <anna@example.com>\nOnderwerp: Inloggen",
    "it": "Da: Support Team <help@example.com>\nData: 03/03/26 10:15 (GMT+01:00)\nA: Anna <anna@example.com>\nOggetto: Accesso",
    "pt": "De: Support Team <help@example.com>\nData: 03/03/2026 10:15 (GMT-03:00)\nPara: Anna <anna@example.com>\nAssunto: Acesso",
    "pl": "Od: Support Team <help@example.com>\nData: 03.03.2026 10:15 (GMT+01:00)\nDo: Anna <anna@example.com>\nTemat: Logowanie",
    "ru": "От: Support Team <help@example.com>\nДата: 03.03.2026 10:15 (GMT+03:00)\nКому: Anna <anna@example.com>\nТема: Вход",
}

IPHONE_SIGNATURES = {
    "en": "Sent from my iPhone",
    "de": "Von meinem iPhone gesendet",
    "fr": "Envoyé de mon iPhone",
    "es": "Enviado desde mi iPhone",
    "nl": "Verstuurd vanaf mijn iPhone",
    "it": "Inviato da iPhone",
    "pt": "Enviado do meu iPhone",
    "pl": "Wysłane z iPhone'a",
    "ru": "Отправлено с iPhone",
}

OUTLOOK_MOBILE_SIGNATURES = {
    "en": "Get Outlook for Android<https://aka.ms/ghei36>",
    "de": "Outlook für Android herunterladen<https://aka.ms/ghei36>",
    "fr": "Obtenir Outlook pour Android<https://aka.ms/ghei36>",
    "es": "Obtener Outlook para Android<https://aka.ms/ghei36>",
    "nl": "Outlook voor Android downloaden<https://aka.ms/ghei36>",
    "it": "Scarica Outlook per Android<https://aka.ms/ghei36>",
    "pt": "Obter o Outlook para Android<https://aka.ms/ghei36>",
    "pl": "Pobierz aplikację Outlook dla systemu Android<https://aka.ms/ghei36>",
    "ru": "Получить Outlook для Android<https://aka.ms/ghei36>",
}

OTHER_CLIENT_SIGNATURES = {
    "en": ["Sent from my Samsung Galaxy smartphone.", "Sent from Yahoo Mail on Android", "Sent from Mail for Windows"],
    "de": [
        "Von meinem Samsung Galaxy Smartphone gesendet.",
        "Diese Nachricht wurde von meinem Android-Mobiltelefon mit GMX Mail gesendet.",
        "Gesendet von Mail für Windows",
    ],
    "fr": ["Envoyé depuis mon appareil Galaxy", "Envoyé à partir de Courrier pour Windows"],
    "es": ["Enviado desde mi smartphone Samsung Galaxy.", "Enviado desde Correo para Windows"],
    "nl": ["Verzonden vanaf mijn Samsung Galaxy-smartphone.", "Verzonden vanuit Mail voor Windows"],
    "it": ["Inviato dal mio smartphone Samsung Galaxy.", "Inviato da Posta per Windows"],
    "pt": ["Enviado do meu smartphone Samsung Galaxy.", "Enviado do Email para Windows"],
    "pl": ["Wysłane z mojego smartfona Galaxy", "Wysłano z aplikacji Poczta dla systemu Windows"],
    "ru": ["Отправлено с устройства Galaxy", "Отправлено из приложения \"Почта\" для Windows"],
}


def quoted(language: str) -> str:
    return f"> {ORIGINALS[language]}\n>\n> Support Team"


def attribution_tail(attributions: dict[str, str], language: str) -> str:
    return f"{attributions[language]}\n\n{quoted(language)}"


def outlook_tail(separator_line: str, headers: dict[str, str], language: str) -> str:
    return f"{separator_line}\n{headers[language]}\n\n{ORIGINALS[language]}"


CLIENTS = {
    "gmail": lambda language: attribution_tail(GMAIL, language),
    "apple_mail": lambda language: attribution_tail(APPLE_MAIL, language),
    "apple_mail_forward": lambda language: f"{APPLE_MAIL_FORWARD[language]}\n\n{ORIGINALS[language]}",
    "thunderbird": lambda language: attribution_tail(THUNDERBIRD, language),
    "outlook_desktop": lambda language: outlook_tail(
        f"-----{ORIGINAL_MESSAGE_SEPARATORS[language]}-----", OUTLOOK_HEADERS, language
    ),
    "outlook_web": lambda language: outlook_tail("________________________________", OUTLOOK_HEADERS, language),
    "outlook_mobile": lambda language: outlook_tail(
        f"{OUTLOOK_MOBILE_SIGNATURES[language]}\n\n________________________________", OUTLOOK_HEADERS, language
    ),
    "ios_mail": lambda language: f"{IPHONE_SIGNATURES[language]}\n\n{attribution_tail(APPLE_MAIL, language)}",
    "samsung_email": lambda language: outlook_tail(
        f"-------- {ORIGINAL_MESSAGE_SEPARATORS[language]} --------", SAMSUNG_HEADERS, language
    ),
}

CASES = [(client, language) for client in CLIENTS for language in LANGUAGES]


@pytest.mark.parametrize(("client", "language"), CASES, ids=[f"{client}-{language}" for client, language in CASES])
def test_client_quote_folds(client, language):
    tail = CLIENTS[client](language)
    text = f"{REPLIES[language]}\n\n{tail}\n"

    visible, folded = split_reply(text)

    assert visible == REPLIES[language]
    assert folded == tail


@pytest.mark.parametrize(("client", "language"), CASES, ids=[f"{client}-{language}" for client, language in CASES])
def test_client_quote_folds_with_crlf(client, language):
    tail = CLIENTS[client](language)
    text = f"{REPLIES[language]}\r\n\r\n{tail}\r\n".replace("\n", "\r\n").replace("\r\r\n", "\r\n")

    visible, folded = split_reply(text)

    assert visible == REPLIES[language].replace("\n", "\r\n")
    assert folded == tail.replace("\n", "\r\n")


CLOSING_LINES = [
    (language, signature)
    for language in LANGUAGES
    for signature in [IPHONE_SIGNATURES[language], OUTLOOK_MOBILE_SIGNATURES[language], *OTHER_CLIENT_SIGNATURES[language]]
]


@pytest.mark.parametrize(("language", "signature"), CLOSING_LINES)
def test_client_closing_line_ends_reply(language, signature):
    text = f"{REPLIES[language]}\n\n{signature}\n"

    assert split_reply(text) == (REPLIES[language], signature)


@pytest.mark.parametrize(("language", "signature"), CLOSING_LINES)
def test_client_closing_line_above_quote_folds(language, signature):
    tail = f"{signature}\n\n{attribution_tail(GMAIL, language)}"

    visible, folded = split_reply(f"{REPLIES[language]}\n\n{tail}")

    assert visible == REPLIES[language]
    assert folded == tail


@pytest.mark.parametrize("language", LANGUAGES)
def test_closing_line_below_bottom_post_folds(language):
    quote = attribution_tail(APPLE_MAIL, language)
    signature = IPHONE_SIGNATURES[language]
    text = f"{quote}\n\n{REPLIES[language]}\n\n{signature}\n"

    visible, folded = split_reply(text)

    assert visible == REPLIES[language]
    assert folded == f"{quote}\n\n{signature}"


@pytest.mark.parametrize(
    "text",
    [
        "Sent from my iPhone, the photo shows the error.\nCan you see it?",
        "Envoyé de mon bureau hier soir.\nLe colis est arrivé ?",
        "Outlook für Android herunterladen hat nicht geklappt.\nWas nun?",
    ],
)
def test_closing_words_inside_reply_stay_visible(text):
    assert split_reply(text) == (text, "")
