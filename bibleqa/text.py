"""Text normalisation shared by the metrics, the lexicon and retrieval: one tokenizer, one stemmer, and the
KJV's word forms mapped onto modern ones.

* ``tokens``: lower-case words; "n't" is read as "not", and digit groups ("1,000") stay one number.
* ``stems``: Snowball (English) stems of ``tokens``, for retrieval.
* ``word_keys``: what the metrics compare: stems after mapping KJV forms to modern ones, so that "liveth"
  meets "lives", "believest" meets "believe", "hath" meets "has" and "shewed" meets "showed"; stems of one
  word family meet too ("sinners" and "sin", "death" and "died": ``KEY_EQUIVALENTS``).

Example::

    >>> from bibleqa.text import tokens, stems, word_keys, contains_run
    >>> tokens("God's love, shown! He didn't.")
    ['god', 's', 'love', 'shown', 'he', 'did', 'not']
    >>> stems("He justified them")
    ['he', 'justifi', 'them']
    >>> word_keys("he that liveth and believeth") == word_keys("he that lives and believes")
    True
    >>> contains_run(stems("we are justified by faith"), stems("justified"))
    True
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import Stemmer

_WORD = re.compile(r"[A-Za-z0-9]+")
_DIGIT_GROUPS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NOT = re.compile(r"n['’]t\b", re.IGNORECASE)

STOP_WORDS = frozenset(
    """a an and are as at be been being but by for from if in into is it its of on or such that the their then
    there these they this those to was were will with am do does did done have has had shall should would
    could can may might must so than up out about also even just very too s t o oh lo behold i me my mine we
    us our ours you your yours he him his she her hers them who whom whose which what when where why how
    here unto upon thee thou thy thine ye hath hast doth dost art wast wert shalt wilt canst didst say says
    said saith sayest let yea verily ca wo through over under against after before between among toward
    towards until while because since again only every all any each both some many much more most other
    another own same now therefore thus hence whether whatsoever whoever whom whomsoever being one something
    anything someone anyone somebody anybody himself herself itself themselves ourselves yourselves myself
    yourself instead""".split()
)
"""Function words that carry no content of an answer (KJV forms included).  Negations are not among them:
they are read by ``bibleqa.wording``."""

NEGATORS = frozenset("not no never neither nor none nothing nobody without cannot impossible unable nay".split())
"""Words that negate what follows them in their clause."""

KJV_FORMS = {
    "hath": "have", "hast": "have", "hadst": "had", "doth": "do", "dost": "do", "didst": "did", "does": "do",
    "goes": "go", "saith": "say", "sayest": "say", "spakest": "speak",
    "sware": "swear", "shew": "show", "shewed": "show", "shewn": "show", "sheweth": "show", "shewing": "show",
    "shewest": "show", "art": "are", "wast": "was", "wert": "were", "shalt": "shall", "wilt": "will",
    "canst": "can", "couldest": "could", "wouldest": "would", "shouldest": "should", "mayest": "may",
    "thee": "you", "thou": "you", "ye": "you", "thy": "your", "thine": "your", "unto": "to", "upon": "on",
    "brethren": "brothers", "whosoever": "whoever", "hither": "here", "thither": "there", "nigh": "near",
    "wherefore": "why", "ere": "before", "begat": "beget", "gat": "got", "bare": "bore",
    "digged": "dug", "holpen": "helped", "slew": "slay", "slain": "slay", "stricken": "strike", "smote": "smite",
    "smitten": "smite",
}  # fmt: skip
"""KJV words whose modern form is not a regular suffix away."""
IRREGULAR_VERBS = {
    "came": "come", "gave": "give", "given": "give", "went": "go", "gone": "go", "saw": "see", "seen": "see",
    "took": "take", "taken": "take", "made": "make", "knew": "know", "known": "know", "spoke": "speak",
    "spoken": "speak", "ate": "eat", "eaten": "eat", "fell": "fall", "fallen": "fall", "rose": "rise",
    "arose": "arise", "sent": "send", "found": "find", "brought": "bring", "thought": "think", "told": "tell",
    "heard": "hear", "stood": "stand", "sat": "sit", "ran": "run", "began": "begin", "begun": "begin",
    "drank": "drink", "wrote": "write", "written": "write", "chose": "choose", "chosen": "choose",
    "forgave": "forgive", "forgiven": "forgive", "led": "lead", "fled": "flee", "kept": "keep", "left": "leave",
    "held": "hold", "taught": "teach", "sought": "seek", "bought": "buy", "sold": "sell", "built": "build",
    "lost": "lose", "paid": "pay", "laid": "lay", "slept": "sleep", "wept": "weep", "overcame": "overcome",
    "forsook": "forsake", "forsaken": "forsake", "hid": "hide", "hidden": "hide", "shone": "shine",
    "swore": "swear", "sworn": "swear", "grew": "grow", "grown": "grow", "drew": "draw", "drawn": "draw",
    "threw": "throw", "thrown": "throw", "spake": "speak", "brake": "break", "broke": "break",
    "broken": "break", "wrought": "work",
}  # fmt: skip
"""Irregular past forms, modern and KJV, read as the verb ("gave" meets "give")."""
KEY_EQUIVALENTS = {
    # one word family
    "sinner": "sin", "death": "die", "dead": "die", "salvat": "save", "saviour": "save", "savior": "save",
    "strength": "strong", "glorious": "glori", "glorifi": "glori", "wicked": "wick", "humil": "humbl",
    "pride": "proud", "wisdom": "wise", "knowledg": "know", "aliv": "live", "redempt": "redeem",
    "deliver": "deliv", "judgment": "judg", "obedi": "obey", "servic": "serv", "servant": "serv", "risen": "rise",
    "rais": "rise", "belief": "believ", "destruct": "destroy", "rever": "fear", "hungri": "hunger",
    "thirsti": "thirst", "intercess": "interced", "creatur": "creation", "favour": "favor",
    # plain synonyms of modern paraphrase and the KJV
    "iniqu": "sin", "transgress": "sin", "trespass": "sin", "wrongdo": "sin", "guilt": "sin", "pardon": "forgiv",
    "everlast": "etern", "forev": "etern", "arrog": "proud", "haughti": "proud", "conceit": "proud",
    "ruin": "destroy", "awe": "fear", "refug": "shelter", "road": "way", "path": "way", "anew": "again",
    "happi": "bless", "anger": "wrath", "furi": "wrath", "ungodli": "godless", "tribul": "troubl",
    "afflict": "troubl", "hardship": "troubl", "courag": "cheer", "overcom": "conquer", "favor": "grace",
    "oppos": "resist", "complet": "uttermost", "heed": "obey", "rescu": "save", "deliv": "save", "tempt": "test",
    "demonstr": "show", "commend": "show", "perish": "die", "trust": "believ", "faith": "believ",
    "compass": "merci", "mammon": "money", "life": "live",
}  # fmt: skip
"""Stems of one word family, or plain synonyms, that the metrics compare as one (followed to the end of a
chain: "deliverance" -> "deliver" -> "deliv" -> "save"): "sinners" meets "sin", "death" meets "died",
"salvation" meets "saved", "everlasting" meets "eternal", "pardon" meets "forgive", "mammon" meets "money"."""
_OUR_KEEP = frozenset({"your", "four", "hour", "flour", "pour", "sour", "tour", "devour", "detour", "ours"})
_ETH_KEEP = frozenset("seth beth teeth japheth nazareth elizabeth shibboleth".split())
_DOUBLED_KEEPS = frozenset("aeioulsf")


def tokens(text: str | None) -> list[str]:
    """Lower-case word tokens: every run of characters other than a-z and 0-9 separates words."""
    return [word.lower() for word, _ in token_spans(text)]


def token_spans(text: str | None) -> list[tuple[str, str]]:
    """Each word token as written (case kept), with the text between it and the previous token (its
    punctuation, for clause and list boundaries).  ``tokens`` is the lower-cased words of this."""
    text = _NOT.sub(" not", _DIGIT_GROUPS.sub("", text or ""))
    spans, end = [], 0
    for match in _WORD.finditer(text):
        spans.append((match.group(), text[end : match.start()]))
        end = match.end()
    return spans


@functools.lru_cache(maxsize=1)
def stemmer() -> Stemmer.Stemmer:
    """The shared Snowball English stemmer."""
    return Stemmer.Stemmer("english")


def stems(text: str | None) -> list[str]:
    """Snowball (English) stems of ``tokens(text)``."""
    return stemmer().stemWords(tokens(text))


def word_key(token: str, after_thou: bool = False) -> str:
    """``stem_key`` with irregular verbs read as the verb ("gave" meets "give") and one word family compared
    as one (``KEY_EQUIVALENTS``): what answers are compared by ("sinners" meets "sin").  The lexicon matches
    by ``stem_key`` alone, so that "chose" (election) stays apart from "choose this day"."""
    stem = stem_key(IRREGULAR_VERBS.get(token, token), after_thou)
    stem = IRREGULAR_VERBS.get(stem, stem)  # "gavest" -> "gave" -> "give"
    for _ in range(4):  # the chains are short; the bound keeps a mistaken cycle from hanging
        stem = KEY_EQUIVALENTS.get(stem, stem)
    return stem


@functools.lru_cache(maxsize=65536)
def stem_key(token: str, after_thou: bool = False) -> str:
    """The stem of one lower-case token after mapping a KJV form to its modern one (what the lexicon's forms
    are matched by: "death" stays apart from "died").  British and KJV "-our" is "-or" ("honour",
    "saviour"); "-eth" is a KJV verb ending wherever it stands ("loveth" -> "loves"); "-est" only after
    "thou" ("thou knowest" -> "knows"), because elsewhere it is a superlative or part of a word ("priest")."""
    token = KJV_FORMS.get(token, token)
    if token.endswith("our") and len(token) > 4 and token not in _OUR_KEEP:  # honour, saviour, neighbour
        token = token[:-3] + "or"
    if len(token) > 4 and token not in _ETH_KEEP and (token.endswith("eth") or (after_thou and token.endswith("est"))):
        token = _modern_verb(token[:-3], token)
    return stemmer().stemWord(token)


def _modern_verb(base: str, token: str) -> str:
    """ "lov" (from "loveth") -> "loves"; "sinn" -> "sin"; "di" -> "dies"; "se" (from "seeth") -> "see"."""
    if len(base) >= 2 and base[-1] == base[-2] and base[-1] not in _DOUBLED_KEEPS:
        return base[:-1]
    if base.endswith("o"):
        return base
    if base.endswith("e"):
        return token[:-2]
    return base + "es"


def word_keys(text: str | None) -> list[str]:
    """``word_key`` of every token of ``text``."""
    words = tokens(text)
    return [word_key(word, index > 0 and words[index - 1] == "thou") for index, word in enumerate(words)]


def contains_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """True when ``needle`` occurs in ``haystack`` as a contiguous run (an empty needle never does)."""
    return find_run(haystack, needle) >= 0


def find_run(haystack: Sequence[str], needle: Sequence[str]) -> int:
    """Index where ``needle`` first occurs in ``haystack`` as a contiguous run, or -1."""
    width = len(needle)
    for start in range(len(haystack) - width + 1 if width else 0):
        if list(haystack[start : start + width]) == list(needle):
            return start
    return -1
