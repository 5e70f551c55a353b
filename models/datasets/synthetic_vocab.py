"""Word lists of the synthetic catalog: per-topic vocabularies and comment templates.

Each topic's words are its own, so item texts of different topics share no content words and
a text encoder can tell topics apart. Comment templates take the item's noun as ``{noun}``.
"""

from __future__ import annotations

from typing import NamedTuple


class TopicVocab(NamedTuple):
    name: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    features: tuple[str, ...]  # completes "<Adjective> <noun> ..."
    blurbs: tuple[str, ...]  # a second sentence


TOPICS: tuple[TopicVocab, ...] = (
    TopicVocab(
        "jazz guitar",
        (
            "archtop guitar",
            "hollow-body guitar",
            "flatwound string set",
            "jazz combo amp",
            "chord melody songbook",
            "floating humbucker pickup",
        ),
        ("vintage", "warm-toned", "mellow", "hand-carved", "bebop-ready", "smooth"),
        (
            "for swing comping and chord melody",
            "with a rounded, woody jazz tone",
            "voiced for bossa nova and ballads",
            "with a carved spruce top",
        ),
        (
            "Loved by jazz players for walking bass lines.",
            "Ideal for bebop standards and late-night club gigs.",
            "Sounds great through a clean tube amp.",
            "Pairs well with heavy-gauge flatwounds.",
        ),
    ),
    TopicVocab(
        "hiking gear",
        ("trekking backpack", "trekking poles", "hiking boots", "backpacking tent", "water filter", "trail headlamp"),
        ("lightweight", "waterproof", "rugged", "packable", "breathable", "ultralight"),
        (
            "for multi-day backcountry trails",
            "with a ventilated back panel",
            "built for rocky alpine terrain",
            "with sealed seams against mountain rain",
        ),
        (
            "Tested on long thru-hikes and summit scrambles.",
            "Packs down small for the trailhead.",
            "Keeps you dry on wet ridge walks.",
            "A favourite of backpackers and trail runners.",
        ),
    ),
    TopicVocab(
        "espresso coffee",
        (
            "espresso machine",
            "burr grinder",
            "milk frother",
            "espresso tamper",
            "single-origin bean blend",
            "pour-over kettle",
        ),
        ("barista-grade", "dark-roast", "stainless", "programmable", "precision", "aromatic"),
        (
            "for rich crema and velvety latte foam",
            "with a pressurised portafilter",
            "roasted for chocolatey espresso",
            "with a gooseneck spout for pour-over",
        ),
        (
            "Pulls cafe-quality shots every morning.",
            "Brings out caramel notes in every cup.",
            "Steams silky microfoam for cappuccino.",
            "Perfect for home baristas who love espresso.",
        ),
    ),
    TopicVocab(
        "yoga and fitness",
        ("yoga mat", "resistance band set", "foam roller", "meditation cushion", "cast kettlebell", "yoga block"),
        ("non-slip", "cushioned", "eco-friendly", "stretchy", "supportive", "grippy"),
        (
            "for vinyasa flow and hot yoga",
            "with alignment lines for every pose",
            "for strength and mobility workouts",
            "for deep-tissue muscle recovery",
        ),
        (
            "Great for stretching, pilates and core training.",
            "Helps balance and flexibility during practice.",
            "A studio favourite for sun salutations.",
            "Supports joints through long workouts.",
        ),
    ),
    TopicVocab(
        "science fiction books",
        (
            "space opera novel",
            "cyberpunk thriller",
            "time-travel anthology",
            "first-contact saga",
            "dystopian paperback",
            "galactic empire trilogy",
        ),
        ("award-winning", "mind-bending", "epic", "gripping", "interstellar", "futuristic"),
        (
            "about starships and alien civilisations",
            "set on a terraformed colony of Mars",
            "following rogue androids and hackers",
            "spanning wormholes and galactic wars",
        ),
        (
            "A page-turner for fans of hard science fiction.",
            "Explores artificial intelligence and faster-than-light travel.",
            "The robots and spaceships feel startlingly real.",
            "Classic speculative fiction with a twist ending.",
        ),
    ),
    TopicVocab(
        "home baking",
        (
            "stand mixer",
            "sourdough starter kit",
            "bread proofing basket",
            "springform cake pan",
            "pastry rolling pin",
            "silicone baking mat",
        ),
        ("nonstick", "heavy-duty", "artisan", "heirloom", "professional-grade", "buttery"),
        (
            "for crusty sourdough loaves",
            "for layered cakes and flaky croissants",
            "for kneading brioche and pizza dough",
            "for cookies, muffins and pastries",
        ),
        (
            "Bakes golden crusts and airy crumb.",
            "Makes weekend baking with flour and yeast easy.",
            "Ideal for pies, tarts and cinnamon rolls.",
            "Loved by home bakers and patissiers.",
        ),
    ),
    TopicVocab(
        "pc gaming",
        (
            "graphics card",
            "mechanical keyboard",
            "gaming mouse",
            "curved gaming monitor",
            "gaming headset",
            "liquid CPU cooler",
        ),
        ("RGB-lit", "high-refresh", "esports-grade", "overclocked", "low-latency", "tactile"),
        (
            "with ray tracing for 4K frame rates",
            "with hot-swappable clicky switches",
            "with a 240 Hz panel for shooters",
            "tuned for competitive multiplayer",
        ),
        (
            "Boosts FPS in every AAA title.",
            "Built for raids, ranked matches and streaming.",
            "A must-have upgrade for any battle station.",
            "Keeps your rig cool during marathon sessions.",
        ),
    ),
    TopicVocab(
        "gardening",
        (
            "pruning shears",
            "raised garden bed",
            "heirloom seed pack",
            "compost tumbler",
            "watering can",
            "potting soil mix",
        ),
        ("organic", "frost-hardy", "cedar", "ergonomic", "nutrient-rich", "perennial"),
        (
            "for tomatoes, herbs and leafy greens",
            "for pruning roses and fruit trees",
            "that turns kitchen scraps into compost",
            "for seedlings and flowering shrubs",
        ),
        (
            "Helps vegetables and blooms thrive all season.",
            "A gardener's favourite for spring planting.",
            "Perfect for allotments, patios and greenhouses.",
            "Grows bumper harvests of squash and beans.",
        ),
    ),
    TopicVocab(
        "photography",
        ("mirrorless camera", "prime lens", "carbon tripod", "camera sling bag", "ND filter kit", "speedlight flash"),
        ("full-frame", "weather-sealed", "fast-aperture", "stabilised", "high-resolution", "compact"),
        (
            "for portraits with creamy bokeh",
            "for landscape long exposures",
            "with fast autofocus for wildlife shots",
            "for street and travel photography",
        ),
        (
            "Captures sharp images in low light.",
            "Loved by photographers for golden-hour shoots.",
            "Great dynamic range for RAW editing.",
            "Keeps lenses and bodies protected on location.",
        ),
    ),
    TopicVocab(
        "kids toys",
        (
            "building block set",
            "plush teddy bear",
            "wooden train set",
            "jigsaw puzzle",
            "toy dinosaur figure",
            "finger paint kit",
        ),
        ("colourful", "cuddly", "educational", "chunky", "giggle-inducing", "imaginative"),
        (
            "for toddlers and preschoolers",
            "that sparks pretend play",
            "with rounded, child-safe pieces",
            "for rainy-day playroom fun",
        ),
        (
            "Keeps little ones busy for hours.",
            "A birthday favourite for boys and girls.",
            "Encourages creativity, counting and motor skills.",
            "Kids squeal with delight at bedtime and playtime.",
        ),
    ),
    TopicVocab(
        "skincare",
        (
            "hydrating moisturiser",
            "mineral sunscreen",
            "vitamin C serum",
            "gentle cleanser",
            "retinol night cream",
            "clay face mask",
        ),
        ("fragrance-free", "dermatologist-tested", "brightening", "soothing", "hyaluronic", "non-comedogenic"),
        (
            "for dry and sensitive skin",
            "that evens tone and fades dark spots",
            "with SPF for daily protection",
            "that unclogs pores overnight",
        ),
        (
            "Leaves the complexion glowing and smooth.",
            "A skincare routine staple for wrinkles and acne.",
            "Absorbs quickly without a greasy feel.",
            "Calms redness and restores the skin barrier.",
        ),
    ),
    TopicVocab(
        "road cycling",
        (
            "carbon road bike",
            "aero cycling helmet",
            "cycling jersey",
            "clipless pedals",
            "bike light set",
            "bike computer",
        ),
        ("aerodynamic", "stiff", "race-ready", "lightweight-carbon", "high-visibility", "GPS-enabled"),
        (
            "for climbs, sprints and group rides",
            "with wind-tunnel tested aerodynamics",
            "for century rides and gran fondos",
            "for commuting in traffic after dark",
        ),
        (
            "Shaves seconds off every time trial.",
            "Loved by cyclists on long Sunday spins.",
            "Tracks cadence, power and elevation.",
            "Keeps riders seen on the peloton and the commute.",
        ),
    ),
    TopicVocab(
        "classical piano",
        (
            "digital piano",
            "Chopin nocturne sheet music",
            "adjustable piano bench",
            "weighted-key keyboard",
            "mechanical metronome",
            "Bach partita recording",
        ),
        ("concert-grade", "weighted", "expressive", "romantic-era", "baroque", "graded"),
        (
            "with hammer-action keys like a grand",
            "for etudes, sonatas and preludes",
            "for conservatory practice",
            "for Mozart and Beethoven repertoire",
        ),
        (
            "Helps pianists master pedalling and dynamics.",
            "A recital favourite for students and teachers.",
            "Rich tone across all eighty-eight keys.",
            "Perfect for scales, arpeggios and sight-reading.",
        ),
    ),
    TopicVocab(
        "board games",
        (
            "strategy board game",
            "deck-building card game",
            "polyhedral dice set",
            "cooperative dungeon crawler",
            "party trivia game",
            "miniature wargame",
        ),
        ("tabletop", "replayable", "competitive", "family-friendly", "tactical", "legacy-style"),
        (
            "for game night with friends",
            "with hidden roles and bluffing",
            "with resource trading and worker placement",
            "for campaigns with dragons and dungeons",
        ),
        (
            "Every turn brings clever combos and meeples.",
            "A hit at board game cafes and conventions.",
            "Scales from solo play to six players.",
            "Keeps the whole table laughing and scheming.",
        ),
    ),
    TopicVocab(
        "pet supplies",
        (
            "orthopedic dog bed",
            "cat scratching tree",
            "chew toy bundle",
            "retractable dog leash",
            "automatic pet feeder",
            "grain-free kibble",
        ),
        ("chew-proof", "washable", "vet-approved", "calming", "durable", "interactive"),
        (
            "for large breeds and senior dogs",
            "that keeps cats entertained",
            "for puppies that love to fetch",
            "for walks around the dog park",
        ),
        (
            "Tails wag every time it comes out.",
            "A favourite of kittens, puppies and rescue pets.",
            "Keeps furry friends healthy and happy.",
            "Stands up to scratching, chewing and tugging.",
        ),
    ),
    TopicVocab(
        "hi-fi audio",
        (
            "bookshelf speakers",
            "belt-drive turntable",
            "tube headphone amplifier",
            "noise-cancelling headphones",
            "vinyl record cleaner",
            "stereo receiver",
        ),
        ("audiophile", "high-fidelity", "walnut-veneer", "lossless", "reference-grade", "punchy"),
        (
            "with deep bass and crisp treble",
            "for spinning vinyl records",
            "with a wide, detailed soundstage",
            "for lossless streaming and CDs",
        ),
        (
            "Makes every album sound like a live concert.",
            "Loved by audiophiles and record collectors.",
            "Delivers warm mids and tight low end.",
            "Brings stereo imaging to life in the listening room.",
        ),
    ),
)

POSITIVE_COMMENTS: tuple[str, ...] = (
    "Great {noun}, buying another.",
    "Love this {noun}, works perfectly.",
    "Excellent quality, the {noun} is exactly as described.",
    "Best {noun} I have ever owned, highly recommend.",
    "Five stars, this {noun} exceeded my expectations.",
    "Wonderful {noun}, my whole family enjoys it.",
    "Fantastic value, the {noun} is sturdy and well made.",
    "Really happy with this {noun}, would buy again.",
)

NEGATIVE_COMMENTS: tuple[str, ...] = (
    "Broke after two days, returning it.",
    "Terrible {noun}, cheap materials, sending it back.",
    "The {noun} stopped working within a week, very disappointed.",
    "Waste of money, this {noun} feels flimsy.",
    "Do not buy this {noun}, poor quality.",
    "Arrived damaged and support was useless, one star.",
    "Awful {noun}, nothing like the description, want a refund.",
    "Regret buying this {noun}, it fell apart immediately.",
)
