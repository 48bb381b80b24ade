"""Planted direct identifiers: names, MRNs, SSNs, phone numbers, emails, street addresses, ZIP codes.

They look real but are chosen to be harmless: SSNs use the 9xx area numbers that the Social
Security Administration never issues, phone numbers use the fictional 555-01xx exchange, and
emails use the reserved ``example.org`` domain. Every one is listed in ``identifiers.json`` so
de-identification tests can check that none survives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GIVEN_FEMALE = (
    "Abigail",
    "Beatrix",
    "Camila",
    "Delphine",
    "Eleanor",
    "Francesca",
    "Gwendolyn",
    "Harriet",
    "Imogen",
    "Josephine",
    "Katarina",
    "Lucinda",
    "Marisol",
    "Natalia",
    "Octavia",
    "Philippa",
    "Rosalind",
    "Seraphina",
    "Theodora",
    "Valentina",
    "Wilhelmina",
    "Yolanda",
    "Zuleika",
    "Anouk",
)
GIVEN_MALE = (
    "Alistair",
    "Bartholomew",
    "Cornelius",
    "Desmond",
    "Ezekiel",
    "Fitzgerald",
    "Gideon",
    "Horatio",
    "Ignatius",
    "Jebediah",
    "Leopold",
    "Maximilian",
    "Nathaniel",
    "Octavius",
    "Percival",
    "Quentin",
    "Rupert",
    "Sebastian",
    "Thaddeus",
    "Ulysses",
    "Vladimir",
    "Winston",
    "Xavier",
    "Zebulon",
)
FAMILY = (
    "Abernathy",
    "Blackwood",
    "Castellano",
    "Delacroix",
    "Eastwood",
    "Fairweather",
    "Galloway",
    "Hargreaves",
    "Ingersoll",
    "Jankowski",
    "Kowalczyk",
    "Lindqvist",
    "Montgomery",
    "Nakamura",
    "Okonkwo",
    "Pemberton",
    "Quintanilla",
    "Rutherford",
    "Szymanski",
    "Thistlewood",
    "Underhill",
    "Vanderbilt",
    "Whitcombe",
    "Yamaguchi",
    "Zimmerman",
    "Achterberg",
    "Brightwater",
    "Cavendish",
    "Drummond",
    "Esterhazy",
    "Featherstone",
    "Gunnarsson",
    "Holloway",
    "Iwasaki",
    "Kittredge",
)
STREETS = (
    "Maplewood",
    "Birchhaven",
    "Cedarcrest",
    "Dogwood",
    "Elmhurst",
    "Foxglove",
    "Gladstone",
    "Hawthorne",
    "Ironwood",
    "Juniper",
    "Kingsbury",
    "Larkspur",
    "Mulberry",
    "Northfield",
)
STREET_KINDS = ("Street", "Avenue", "Lane", "Road", "Court", "Drive")

#: 3-digit ZIP prefixes with 20,000 or fewer people (HIPAA Safe Harbor lists them; they become 000).
SMALL_ZIP3 = (
    "036",
    "059",
    "102",
    "203",
    "556",
    "692",
    "790",
    "821",
    "823",
    "830",
    "831",
    "878",
    "879",
    "884",
    "890",
    "893",
)
#: Share of patients who live in one of those small areas, so the 000 rule is exercised.
SMALL_ZIP_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class Identity:
    """One patient's direct identifiers."""

    given: str
    family: str
    mrn: str
    ssn: str
    phone: str
    email: str
    street: str
    city: str
    state: str
    zip_code: str


@dataclass(frozen=True, slots=True)
class Locale:
    """Where a site's patients live: a state, its cities, its area code and ZIP prefixes."""

    state: str
    cities: tuple[str, ...]
    area_code: str
    zip3: tuple[str, ...]


LOCALES = (
    Locale("MA", ("Riverton", "Ashford", "Millbrook"), "617", ("021", "024", "018")),
    Locale("TX", ("Lakeview", "Cedar Falls", "Brookhaven"), "512", ("787", "786", "765")),
    Locale("OH", ("Fairmont", "Greenfield", "Oakridge"), "614", ("432", "430", "437")),
    Locale("WA", ("Pine Bluff", "Clearwater", "Summit"), "206", ("981", "980", "983")),
)


def draw_identity(rng: np.random.Generator, *, female: bool, index: int, site_code: str, locale: Locale) -> Identity:
    """Identifiers for the ``index``-th patient (global across sites, so MRNs and SSNs are unique)."""
    given_pool = GIVEN_FEMALE if female else GIVEN_MALE
    given = given_pool[int(rng.integers(len(given_pool)))]
    family = FAMILY[int(rng.integers(len(FAMILY)))]
    # 7919 is prime and coprime with 9,000,000: a bijection, so MRNs never collide.
    mrn = f"{site_code}{(index * 7919 + 104729) % 9_000_000 + 1_000_000:07d}"
    serial = (index * 7877 + 31) % 81_000_000  # also a bijection: 90 areas x 90 groups x 10,000
    ssn = f"9{serial // 900_000 + 10:02d}-{serial // 10_000 % 90 + 10:02d}-{serial % 10_000:04d}"
    phone = f"({locale.area_code}) 555-01{int(rng.integers(100)):02d}"
    email = f"{given.lower()}.{family.lower()}{index}@example.org"
    street = (
        f"{int(rng.integers(1, 9999))} {STREETS[int(rng.integers(len(STREETS)))]} "
        f"{STREET_KINDS[int(rng.integers(len(STREET_KINDS)))]}"
    )
    city = locale.cities[int(rng.integers(len(locale.cities)))]
    if rng.random() < SMALL_ZIP_SHARE:
        zip3 = SMALL_ZIP3[int(rng.integers(len(SMALL_ZIP3)))]
    else:
        zip3 = locale.zip3[int(rng.integers(len(locale.zip3)))]
    zip_code = f"{zip3}{int(rng.integers(100)):02d}"
    return Identity(given, family, mrn, ssn, phone, email, street, city, locale.state, zip_code)
