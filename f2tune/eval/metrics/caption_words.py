"""The words the COCO caption evaluation scores, without its Java tokenizer.

pycocoevalcap tokenizes captions with the Stanford PTB tokenizer (CoreNLP 3.4.1, lower-casing) and then
removes its punctuation tokens. `tokenize` does the same in Python: hyphenated words, decimals and times stay
whole ("t-shirt", "3.5", "10:30"), clitics are split off ("man 's", "do n't"), abbreviations keep their period
("st.", "u.s."), brackets become "-lrb-" and the like. On a few hundred varied captions it agrees with the real
tokenizer on 99% (differences: "y'all", "rock'n'roll", "'tis", e-mail addresses, "3 1/2"), with no download.
"""

from __future__ import annotations

import re

# Words that PTB keeps with their period ("st.", "mr.", "etc."), as the COCO evaluation's tokenizer
# (Stanford CoreNLP 3.4.1) treats them; probed with the tokenizer itself. A plain word loses its period.
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr drs prof profs sen sens rep reps atty attys lt col gen messrs gov govs adm rev maj sgt cpl pvt
    capt st ste ave pres lieut hon brig cmdr comdr pfc spc supt supts det mme mlle inc co cos corp pty ltd plc bancorp
    dept bhd assn univ intl sys invt elec natl mfg mtg blvd rd wm jos cie cf tel est ext sq jr sr bros esq etc vs jan
    feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri ala ariz calif colo conn ct dak fla ga
    ind kan kans ky md mich minn mo mont neb nev okla penn tenn va vt wis wisc wyo mt ft rt al bldg""".split()
)
_CAPITALIZED_ABBREVIATIONS = frozenset("miss wash az ark del ill la mass ore pa tex".split())  # only as "Miss."
_NUMBER_ABBREVIATIONS = frozenset("no nos ca fig figs prop art pp op".split())  # only before a number: "no. 5"
# Capitalized words after which a single letter's period ends the sentence ("plan B. The ...").
_SENTENCE_STARTS = frozenset(
    """the this that these then there their they he she it we you a an but so in at as if when while what some one many
    more other our her after since now here however yet such last once about according""".split()
)
# pycocoevalcap drops PTB's punctuation tokens: quotes, . ? ! , : ; and runs of periods or dashes. Not brackets: its
# list has "-LRB-" etc. in upper case, PTB's output is lower case, so they stay as words.
_DROPPED = frozenset("'\"`.?!,:;-")
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CHARACTERS = str.maketrans(  # what PTB normalizes: curly quotes, guillemets, euro and pound signs, ...
    dict(zip("\u2018\u2019\u201c\u201d\u00ab\u00bb\u20ac\u00a3", '\'\'""""$#'))
    | {"\u2026": " ... ", "\u2013": " -- ", "\u2014": " -- ", "\u00bd": " 1/2 ", "\u00bc": " 1/4 ", "\u00be": " 3/4 "}
)
# Characters the PTB lexer cannot tokenize: it deletes them, and they separate tokens.
_UNTOKENIZABLE = re.compile("[\U00010000-\U0010ffff\u200b-\u200f\ufe00-\ufe0f]")
# What joins letters and digits into one word: a hyphen, slash or underscore; a period, unless between a letter
# and a digit ("3.5", "u.s", but "v1 .2"); an apostrophe before a letter ("o'clock"; clitics are split off later);
# a comma or colon between digits ("1,000", "10:30"); an ampersand between capitals ("AT&T").
_JOINER = r"[-/_]|(?<![^\W\d_])\.|\.(?!\d)|'(?=[^\W\d_])|(?<=\d)[,:](?=\d)|(?<=[A-Z])&(?=[A-Z])"
_TOKEN = re.compile(
    rf"""(?:\.(?=\d)|'(?=\d\d(?!\d)))?[^\W_]+(?:(?:{_JOINER})[^\W_]+)*  # a word, also ".5" and "'90s"
    |\.+|[!?]+|-+|_+|\*+|\S  # runs of periods, of !?, of dashes, of underscores, of asterisks; any other symbol""",
    re.VERBOSE,
)
_NUMBER_UNIT = re.compile(r"(\d+(?:[.,:]\d+)+)([^\W\d_]+)")  # "3.5kg", "10:30am": PTB splits off the unit
_CLITIC = re.compile(r"(.+?)(n't|'(?:s|m|d|ll|re|ve))", re.IGNORECASE)
_FUSED = {"cannot": 3, "gonna": 2, "gotta": 2, "wanna": 2, "lemme": 2, "gimme": 2}  # "gonna" -> "gon na"


def _split_word(word: str) -> list[str]:
    """A word as PTB splits it: a unit off a number, a clitic off its host ("don't" -> "do n't")."""
    if unit := _NUMBER_UNIT.fullmatch(word):
        return [unit[1], unit[2]]
    if (cut := _FUSED.get(word.lower())) is not None:
        return [word[:-cut], word[-cut:]]
    if clitic := _CLITIC.fullmatch(word):
        return [*_split_word(clitic[1]), clitic[2]]
    return [word]


def _keeps_period(word: str, rest: str) -> bool:
    """Whether PTB keeps the period after `word` (`rest` is the text after the period): known
    abbreviations, letters with periods ("u.s.", "p.m."), and single letters unless a sentence starts after them."""
    lower = word.lower()
    if lower in _ABBREVIATIONS or (word[0].isupper() and lower in _CAPITALIZED_ABBREVIATIONS):
        return True
    if lower in _NUMBER_ABBREVIATIONS:
        return rest.lstrip()[:1].isdigit()
    parts = word.split(".")
    if len(parts) > 1:
        return all(p.isalpha() for p in parts) and len(parts[-1]) == 1
    following = rest.split(maxsplit=1)[0] if rest.strip() else ""
    starts_sentence = following[:1].isupper() and following.lower() in _SENTENCE_STARTS
    return len(word) == 1 and word.isalpha() and not starts_sentence


def tokenize(text: str) -> list[str]:
    """The words the COCO caption evaluation scores: pycocoevalcap's PTB tokenization (lower case,
    hyphenated words and numbers whole, clitics split off) without its punctuation tokens."""
    text = _UNTOKENIZABLE.sub(" ", text.translate(_CHARACTERS))
    words = []
    for match in _TOKEN.finditer(text):
        token = match[0]
        if token in _BRACKETS:
            words.append(_BRACKETS[token])
        elif token[-1].isalnum():
            if text.startswith(".", match.end()) and _keeps_period(token, text[match.end() + 1 :]):
                token += "."
            words.extend(w.lower() for w in _split_word(token))
        elif token not in _DROPPED and not token.startswith(("..", "--")):
            words.append(token.lower())
    return words


def tokenized(text: str) -> str:
    """`tokenize`'s words joined by single spaces (what whitespace-splitting scorers expect)."""
    return " ".join(tokenize(text))
