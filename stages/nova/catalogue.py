"""A catalogue of rare brain "pathologies": what the synthetic benchmark draws from and what the
retrieval diagnoser and the synonym judge look up.

Each entry says how the abnormality looks (shape, size, signal per sequence, typical location,
phrases a radiologist would write), how the patient presents (history phrases, age range) and
what the diagnosis may be called (synonyms). Frequencies are long-tailed: the entry at rank
``r`` is drawn with weight ``1 / (r + 1) ** 1.1``, so a handful of entries are common and most
appear once or not at all in a small benchmark, as in NOVA.

This is a teaching catalogue for a synthetic benchmark, not medical knowledge to act on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

SEQUENCES = ("T1", "T2", "FLAIR", "DWI")
PLANES = ("axial", "coronal", "sagittal")
SHAPES = ("round", "lobulated", "ring", "irregular", "multifocal", "elongated")
LOCATIONS = ("white_matter", "periventricular", "cortical", "deep_grey", "extra_axial", "intraventricular")
SIGNALS = ("hyper", "hypo", "iso")

SEQUENCE_PHRASES = {"T1": "T1-weighted", "T2": "T2-weighted", "FLAIR": "FLAIR", "DWI": "DWI"}
SIGNAL_PHRASES = {"hyper": "hyperintense", "hypo": "hypointense", "iso": "isointense"}
SHAPE_PHRASES = {
    "round": "well-circumscribed round",
    "lobulated": "lobulated",
    "ring": "ring-enhancing",
    "irregular": "ill-defined infiltrative",
    "multifocal": "multifocal",
    "elongated": "elongated",
}


@dataclass(frozen=True)
class Pathology:
    """One catalogue entry."""

    id: str
    name: str
    synonyms: tuple[str, ...]
    shape: str
    location: str
    signal: dict[str, str]
    radius_mm: tuple[float, float]
    phrases: tuple[str, ...]
    histories: tuple[str, ...]
    age: tuple[int, int] = (20, 75)
    oedema: bool = False
    keywords: tuple[str, ...] = field(default=())

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


def _signal(t1: str, t2: str, flair: str, dwi: str) -> dict[str, str]:
    return {"T1": t1, "T2": t2, "FLAIR": flair, "DWI": dwi}


CATALOGUE: tuple[Pathology, ...] = (
    Pathology("glioblastoma", "Glioblastoma", ("glioblastoma multiforme", "GBM", "grade 4 astrocytoma"),
              "ring", "white_matter", _signal("hypo", "hyper", "hyper", "iso"), (9, 16),
              ("with central necrosis", "with surrounding vasogenic oedema", "with mass effect"),
              ("progressive headache and new-onset seizures", "subacute left-sided weakness and confusion"),
              (50, 78), True, ("seizures", "headache", "weakness", "progressive")),
    Pathology("tumefactive_demyelination", "Tumefactive demyelinating lesion", ("tumefactive multiple sclerosis", "tumefactive MS"),
              "ring", "periventricular", _signal("hypo", "hyper", "hyper", "hyper"), (8, 14),
              ("with an incomplete rim", "with little mass effect"),
              ("subacute hemiparesis in a young adult", "visual blurring and limb numbness"),
              (18, 45), True, ("hemiparesis", "numbness", "young", "visual")),
    Pathology("cerebral_abscess", "Cerebral abscess", ("brain abscess", "pyogenic abscess"),
              "ring", "white_matter", _signal("hypo", "hyper", "hyper", "hyper"), (7, 13),
              ("with a smooth thin wall", "with restricted diffusion centrally"),
              ("fever, headache and recent dental infection", "fever and confusion after sinusitis"),
              (20, 70), True, ("fever", "infection", "sinusitis", "dental")),
    Pathology("meningioma", "Meningioma", ("meningeal tumour", "dural-based meningioma"),
              "round", "extra_axial", _signal("iso", "iso", "hyper", "iso"), (8, 16),
              ("with a dural tail", "compressing the adjacent cortex"),
              ("slowly progressive headache", "incidental finding on imaging for dizziness"),
              (40, 80), False, ("headache", "incidental", "slowly", "dizziness")),
    Pathology("cavernoma", "Cavernous malformation", ("cavernoma", "cavernous angioma", "cavernous haemangioma"),
              "lobulated", "white_matter", _signal("hyper", "hypo", "hypo", "hypo"), (4, 8),
              ("with a popcorn appearance", "with a haemosiderin rim"),
              ("single seizure", "recurrent headaches and a family history of seizures"),
              (15, 60), False, ("seizure", "family", "headaches")),
    Pathology("pml", "Progressive multifocal leukoencephalopathy", ("PML", "JC virus leukoencephalopathy"),
              "irregular", "white_matter", _signal("hypo", "hyper", "hyper", "hyper"), (10, 18),
              ("involving the subcortical U-fibres", "without mass effect"),
              ("progressive cognitive decline on natalizumab", "immunosuppressed patient with ataxia and aphasia"),
              (30, 65), False, ("immunosuppressed", "natalizumab", "cognitive", "aphasia")),
    Pathology("neurocysticercosis", "Neurocysticercosis", ("cysticercosis of the brain", "taenia solium infection"),
              "multifocal", "cortical", _signal("hypo", "hyper", "hypo", "iso"), (2, 4),
              ("with a central scolex", "with cystic foci at the grey-white junction"),
              ("new seizures after travel to an endemic region", "recurrent seizures in a farmer"),
              (15, 55), False, ("seizures", "travel", "endemic", "farmer")),
    Pathology("herpes_encephalitis", "Herpes simplex encephalitis", ("HSV encephalitis", "herpes encephalitis"),
              "irregular", "cortical", _signal("hypo", "hyper", "hyper", "hyper"), (10, 16),
              ("with cortical swelling", "involving the mesial temporal lobe"),
              ("fever, confusion and aphasia", "acute behavioural change and fever"),
              (20, 80), True, ("fever", "confusion", "behavioural", "acute")),
    Pathology("colloid_cyst", "Colloid cyst", ("colloid cyst of the third ventricle", "third ventricular colloid cyst"),
              "round", "intraventricular", _signal("hyper", "hypo", "hyper", "iso"), (4, 7),
              ("at the foramen of Monro", "with hydrocephalus"),
              ("positional headache and transient loss of consciousness", "intermittent severe headache"),
              (25, 60), False, ("positional", "headache", "consciousness", "intermittent")),
    Pathology("lymphoma", "Primary CNS lymphoma", ("CNS lymphoma", "primary cerebral lymphoma", "PCNSL"),
              "lobulated", "periventricular", _signal("hypo", "iso", "hyper", "hyper"), (8, 14),
              ("with homogeneous enhancement", "crossing the corpus callosum"),
              ("subacute cognitive decline in an immunocompromised patient", "personality change and weight loss"),
              (45, 80), True, ("immunocompromised", "cognitive", "personality", "weight")),
    Pathology("osmotic_demyelination", "Osmotic demyelination syndrome", ("central pontine myelinolysis", "extrapontine myelinolysis"),
              "round", "deep_grey", _signal("hypo", "hyper", "hyper", "hyper"), (6, 10),
              ("with a trident shape", "sparing the periphery"),
              ("rapid correction of hyponatraemia followed by dysarthria", "quadriparesis after treatment of low sodium"),
              (30, 70), False, ("hyponatraemia", "sodium", "dysarthria", "correction")),
    Pathology("wernicke", "Wernicke encephalopathy", ("Wernicke's encephalopathy", "thiamine deficiency encephalopathy"),
              "round", "deep_grey", _signal("iso", "hyper", "hyper", "hyper"), (4, 7),
              ("with symmetric medial thalamic signal change", "around the third ventricle"),
              ("confusion, ataxia and ophthalmoplegia in chronic alcohol use", "vomiting, confusion and nystagmus after bariatric surgery"),
              (30, 65), False, ("alcohol", "ataxia", "ophthalmoplegia", "bariatric")),
    Pathology("dnet", "Dysembryoplastic neuroepithelial tumour", ("DNET", "DNT", "dysembryoplastic neuroepithelial tumor"),
              "lobulated", "cortical", _signal("hypo", "hyper", "hyper", "iso"), (6, 11),
              ("with a bubbly appearance", "without oedema"),
              ("drug-resistant focal seizures since childhood", "long-standing partial epilepsy"),
              (8, 30), False, ("epilepsy", "childhood", "drug-resistant", "partial")),
    Pathology("haemangioblastoma", "Haemangioblastoma", ("hemangioblastoma", "capillary haemangioblastoma"),
              "ring", "white_matter", _signal("hypo", "hyper", "hyper", "iso"), (7, 12),
              ("forming a cyst with an enhancing mural nodule", "with flow voids"),
              ("headache and unsteadiness in von Hippel-Lindau disease", "ataxia and family history of renal tumours"),
              (20, 55), False, ("hippel-lindau", "unsteadiness", "ataxia", "renal")),
    Pathology("cadasil", "CADASIL", ("cerebral autosomal dominant arteriopathy", "CADASIL arteriopathy"),
              "multifocal", "periventricular", _signal("hypo", "hyper", "hyper", "iso"), (2, 5),
              ("with confluent white matter change", "involving the anterior temporal poles"),
              ("migraine with aura and recurrent strokes in a young adult", "mood disturbance and family history of early stroke"),
              (30, 60), False, ("migraine", "aura", "stroke", "family")),
    Pathology("venous_infarct", "Venous infarction", ("cerebral venous thrombosis with infarct", "venous sinus thrombosis infarct"),
              "irregular", "cortical", _signal("hypo", "hyper", "hyper", "hyper"), (9, 15),
              ("with haemorrhagic foci", "not conforming to an arterial territory"),
              ("headache and seizure in the postpartum period", "thunderclap headache on the oral contraceptive pill"),
              (20, 50), True, ("postpartum", "contraceptive", "thunderclap", "seizure")),
    Pathology("epidermoid", "Epidermoid cyst", ("epidermoid tumour", "intracranial epidermoid"),
              "lobulated", "extra_axial", _signal("hypo", "hyper", "hyper", "hyper"), (7, 13),
              ("insinuating between structures", "with restricted diffusion"),
              ("facial pain and hearing loss", "slowly progressive cranial nerve palsy"),
              (20, 60), False, ("facial", "hearing", "cranial", "nerve")),
    Pathology("ependymoma", "Ependymoma", ("intraventricular ependymoma", "supratentorial ependymoma"),
              "lobulated", "intraventricular", _signal("hypo", "hyper", "hyper", "iso"), (6, 11),
              ("with calcification", "extending through the ventricular foramina"),
              ("headache, nausea and vomiting", "raised intracranial pressure in a young patient"),
              (5, 40), False, ("nausea", "vomiting", "intracranial", "pressure")),
    Pathology("susac", "Susac syndrome", ("retinocochlear vasculopathy", "SICRET syndrome"),
              "multifocal", "periventricular", _signal("hypo", "hyper", "hyper", "hyper"), (2, 4),
              ("with snowball lesions of the corpus callosum",),
              ("encephalopathy, hearing loss and branch retinal artery occlusion",),
              (20, 45), False, ("hearing", "retinal", "encephalopathy")),
    Pathology("tuberculoma", "Tuberculoma", ("intracranial tuberculoma", "CNS tuberculosis"),
              "ring", "cortical", _signal("iso", "hypo", "hypo", "iso"), (4, 8),
              ("with a T2-dark centre", "with surrounding oedema"),
              ("fever, night sweats and seizures", "weight loss and headache in a patient from an endemic area"),
              (15, 60), True, ("night", "sweats", "weight", "endemic")),
    Pathology("ganglioglioma", "Ganglioglioma", ("gangliocytoma", "mixed neuronal-glial tumour"),
              "round", "cortical", _signal("hypo", "hyper", "hyper", "iso"), (6, 10),
              ("with a cystic component", "with calcification"),
              ("temporal lobe epilepsy since adolescence",),
              (10, 30), False, ("epilepsy", "adolescence", "temporal")),
    Pathology("creutzfeldt_jakob", "Creutzfeldt-Jakob disease", ("CJD", "prion disease"),
              "elongated", "deep_grey", _signal("iso", "hyper", "hyper", "hyper"), (6, 10),
              ("with cortical ribboning", "involving the caudate and putamen"),
              ("rapidly progressive dementia with myoclonus",),
              (50, 80), False, ("dementia", "myoclonus", "rapidly")),
    Pathology("radiation_necrosis", "Radiation necrosis", ("radionecrosis", "post-radiation necrosis"),
              "ring", "white_matter", _signal("hypo", "hyper", "hyper", "iso"), (8, 13),
              ("with a soap-bubble enhancement pattern",),
              ("new enhancement two years after radiotherapy",),
              (30, 75), True, ("radiotherapy", "enhancement", "years")),
    Pathology("pineal_cyst", "Pineal cyst", ("cystic pineal lesion",),
              "round", "intraventricular", _signal("hypo", "hyper", "hyper", "iso"), (4, 7),
              ("with a thin rim",),
              ("incidental finding during work-up for headache",),
              (15, 60), False, ("incidental", "headache")),
    Pathology("neurosarcoidosis", "Neurosarcoidosis", ("CNS sarcoidosis", "sarcoid of the brain"),
              "irregular", "extra_axial", _signal("iso", "hyper", "hyper", "iso"), (6, 11),
              ("with leptomeningeal enhancement",),
              ("cranial neuropathy and hilar lymphadenopathy",),
              (25, 60), False, ("lymphadenopathy", "neuropathy", "hilar")),
    Pathology("mitochondrial_stroke", "MELAS", ("mitochondrial encephalopathy with stroke-like episodes", "MELAS syndrome"),
              "irregular", "cortical", _signal("hypo", "hyper", "hyper", "hyper"), (9, 14),
              ("not respecting vascular territories",),
              ("stroke-like episode, short stature and hearing loss",),
              (10, 40), False, ("short", "stature", "stroke-like", "lactate")),
    Pathology("hypertrophic_olivary", "Hypertrophic olivary degeneration", ("olivary hypertrophy",),
              "round", "deep_grey", _signal("iso", "hyper", "hyper", "iso"), (3, 5),
              ("with enlargement",),
              ("palatal tremor months after a brainstem haemorrhage",),
              (40, 75), False, ("palatal", "tremor", "haemorrhage")),
    Pathology("lhermitte_duclos", "Lhermitte-Duclos disease", ("dysplastic gangliocytoma",),
              "elongated", "cortical", _signal("hypo", "hyper", "hyper", "iso"), (7, 11),
              ("with a striated tiger-stripe pattern",),
              ("headache and ataxia in Cowden syndrome",),
              (20, 50), False, ("cowden", "ataxia")),
    Pathology("amyloid_angiopathy", "Cerebral amyloid angiopathy", ("CAA", "amyloid angiopathy"),
              "multifocal", "cortical", _signal("iso", "hypo", "hypo", "hypo"), (2, 3),
              ("in a lobar distribution", "with superficial siderosis"),
              ("transient focal neurological episodes in an elderly patient",),
              (65, 90), False, ("elderly", "transient", "episodes")),
    Pathology("rosai_dorfman", "Rosai-Dorfman disease", ("sinus histiocytosis with massive lymphadenopathy",),
              "round", "extra_axial", _signal("iso", "hypo", "iso", "iso"), (7, 12),
              ("that is dural-based and T2-dark",),
              ("painless cervical lymphadenopathy and headache",),
              (15, 50), False, ("cervical", "lymphadenopathy", "painless")),
    Pathology("choroid_plexus_papilloma", "Choroid plexus papilloma", ("CPP", "plexus papilloma"),
              "lobulated", "intraventricular", _signal("iso", "hyper", "hyper", "iso"), (6, 10),
              ("with a frond-like surface", "with hydrocephalus"),
              ("macrocephaly and vomiting",),
              (1, 20), False, ("macrocephaly", "vomiting")),
    Pathology("marchiafava_bignami", "Marchiafava-Bignami disease", ("corpus callosum degeneration",),
              "elongated", "periventricular", _signal("hypo", "hyper", "hyper", "hyper"), (6, 10),
              ("involving the corpus callosum",),
              ("dysarthria and confusion in chronic alcohol use",),
              (40, 70), False, ("alcohol", "dysarthria", "confusion")),
)

CATALOGUE_BY_ID = {entry.id: entry for entry in CATALOGUE}


def frequency_weights(n: int, exponent: float = 1.1) -> np.ndarray:
    """Long-tailed (Zipf-like) sampling weights for ranks ``0 .. n-1``, summing to 1."""
    weights = 1.0 / (np.arange(n) + 1.0) ** exponent
    return weights / weights.sum()


_NON_WORD = re.compile(r"[^a-z0-9]+")
_DROPPED = {"the", "of", "a", "an", "with", "and", "disease", "syndrome", "s"}


def normalise_diagnosis(text: str) -> str:
    """Lower case, British/American spelling folded, punctuation and filler words dropped."""
    lowered = text.lower().replace("tumor", "tumour").replace("hemangio", "haemangio").replace("edema", "oedema")
    lowered = lowered.replace("'s", "")
    words = [w for w in _NON_WORD.split(lowered) if w and w not in _DROPPED]
    return " ".join(words)


def synonym_index(catalogue: tuple[Pathology, ...] = CATALOGUE) -> dict[str, str]:
    """Normalised name or synonym -> catalogue id."""
    index: dict[str, str] = {}
    for entry in catalogue:
        for name in entry.names():
            index.setdefault(normalise_diagnosis(name), entry.id)
    return index


# --------------------------------------------------------------------------- pathology categories
# Ours: broad categories read from a diagnosis' name, so results can be grouped meaningfully on the
# real release, where nearly every pathology has one case (a common/rare split by case count is
# then almost all "rare"). The first category whose pattern matches wins, so specific vascular,
# infectious, ... names are taken before the catch-all "-oma" of the neoplastic group.
CATEGORY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("vascular", r"infarct|stroke|isch[a]?emi|ha?emorrhag|ha?ematoma|aneurysm|arteriovenous|cavern|angioma|venous|"
                 r"thromb|vasculitis|vasculopathy|angiopathy|arteriopathy|cadasil|moyamoya|dissection|fistula|susac|"
                 r"microbleed|vascular"),
    ("infectious", r"abscess|(?<!autoimmune )(?<!limbic )encephalitis|infection|infectious|tubercul|cysticerc|toxoplasm|"
                   r"\bpml\b|progressive multifocal|prion|creutzfeldt|\bcjd\b|meningitis|empyema|fungal|viral|bacterial|"
                   r"\bhiv\b|syphilis|lyme|cryptococc|aspergill|nocardi|\bjc virus"),
    ("metabolic / toxic / degenerative", r"wernicke|myelinolysis|osmotic|melas|mitochondri|marchiafava|toxic|metabolic|"
                                         r"hepatic|leukodystroph|degenerat|radiation|radionecrosis|posterior reversible|"
                                         r"\bpres\b|hypoglyc|carbon monoxide|wilson|fahr|deficiency"),
    ("inflammatory / demyelinating", r"demyelinat|sclerosis|\bms\b|\badem\b|neuromyelitis|sarcoid|autoimmune|limbic|lupus|"
                                     r"beh[cç]et|histiocyt|rosai|inflammat"),
    ("traumatic", r"trauma|contusion|axonal injury|shear"),
    ("developmental / cystic", r"cyst\b|cysts\b|cystic|dysplasia|heterotopi|malformation|chiari|schizencephal|"
                               r"polymicrogyr|lissenceph|agenesis|congenital"),
    ("neoplastic", r"tumou?r|neoplas|metasta|carcinom|sarcom|lymphom|glioma|\w+oma\b|\bdnet\b|\bdnt\b|\bpcnsl\b|"
                   r"\bgbm\b|papilloma|blastoma|cytoma|cancer|malignan"),
)
CATEGORIES = tuple(name for name, _ in CATEGORY_PATTERNS) + ("other",)


def pathology_category(diagnosis: str) -> str:
    """The broad category of a diagnosis by its name (:data:`CATEGORY_PATTERNS`), ``other`` when none matches."""
    lowered = diagnosis.lower()
    for name, pattern in CATEGORY_PATTERNS:
        if re.search(pattern, lowered):
            return name
    return "other"
