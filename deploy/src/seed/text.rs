//! The readable parts of the demo data: review comments that match their rating, with
//! long-tailed lengths like real reviews, and reviewers' names and pictures.

use rand::Rng;

/// Comment lengths are drawn log-normal around this median (characters; comments of
/// whole sentences come out a little shorter, about 77)...
const MEDIAN_LENGTH: f64 = 82.0;
/// ...with this spread, which puts the mean near 150 once capped.
const LENGTH_SIGMA: f64 = 1.18;
/// The longest comment generated (the API allows 5,000).
pub const MAX_COMMENT: usize = 1000;

const TOPICS: &[&str] = &[
    "the exercises",
    "the final project",
    "the quizzes",
    "the worked examples",
    "the first module",
    "the section on testing",
    "the videos",
    "the slides",
    "the reading list",
    "the capstone",
    "the chapter on performance",
    "the debugging walkthrough",
    "the setup instructions",
    "the deployment part",
    "the Q&A sessions",
    "the coding challenges",
];

const SHORT_POSITIVE: &[&str] = &[
    "Great course!",
    "Loved it.",
    "Excellent.",
    "Highly recommended.",
    "Worth every minute.",
    "Five stars from me.",
    "Superb teaching.",
    "Really well done.",
];
const SHORT_MIXED: &[&str] = &[
    "It was okay.",
    "Decent overall.",
    "Good, not great.",
    "Mixed feelings.",
    "Fine for a start.",
    "Some good parts.",
];
const SHORT_NEGATIVE: &[&str] = &[
    "Disappointing.",
    "Not worth it.",
    "Too basic.",
    "Hard to follow.",
    "Outdated content.",
    "Would not recommend.",
];

const POSITIVE: &[&str] = &[
    "The instructor explains every idea clearly and never rushes.",
    "I finally understand how the pieces fit together.",
    "I would have paid for {topic} alone.",
    "Each lesson builds on the previous one, so nothing felt out of place.",
    "I used what I learned at work the very next week.",
    "The pacing is just right for someone with a little background.",
    "Clear, practical and well organised.",
    "I liked that {topic} used realistic problems instead of toy ones.",
    "The instructor answers questions quickly and kindly.",
    "You can tell a lot of care went into {topic}.",
    "I have taken several courses on this subject and this is the best so far.",
    "Short videos, good examples, no filler.",
    "My confidence grew a lot after finishing {topic}.",
    "The explanations of the tricky parts are patient and thorough.",
    "I would happily take another course from this instructor.",
    "Everything worked exactly as shown, which saved me hours.",
];
const MIXED: &[&str] = &[
    "Some sections are excellent, others feel rushed.",
    "{topic} could use more explanation.",
    "The content is solid but the audio quality varies.",
    "I expected more depth in the later chapters.",
    "Good introduction, though experienced people will skim a lot.",
    "A few examples are out of date but easy to adapt.",
    "I found {topic} helpful, the rest less so.",
    "The instructor knows the material but sometimes goes off on tangents.",
    "It covers the basics well but stops just when it gets interesting.",
    "More practice problems would make this much better.",
    "I learned useful things, but it took longer than advertised.",
    "The pace in {topic} was uneven.",
];
const NEGATIVE: &[&str] = &[
    "Most of the material is available for free and better explained elsewhere.",
    "{topic} did not work with the current versions of the tools.",
    "The instructor reads the slides and adds very little.",
    "I could not follow the jumps between topics.",
    "Questions in the forum went unanswered for weeks.",
    "Too much time on trivial things and none on the hard parts.",
    "I found many mistakes in {topic}.",
    "The description promised far more than the course delivers.",
    "Audio is poor and the code on screen is hard to read.",
    "I asked for a refund after {topic}.",
];

/// A comment fitting `half_stars` (2–10) into `text` (replacing what it held): complete
/// sentences, adding each next sentence while at least half of it fits the drawn length,
/// so lengths follow the draw.
pub fn comment(rng: &mut impl Rng, half_stars: i16, text: &mut String) {
    let (short, long) = match half_stars {
        8..=10 => (SHORT_POSITIVE, POSITIVE),
        5..=7 => (SHORT_MIXED, MIXED),
        _ => (SHORT_NEGATIVE, NEGATIVE),
    };
    let target = comment_length(rng);
    text.clear();
    if target < 40 {
        text.push_str(pick(rng, short));
    }
    loop {
        let (template, topic) = (pick(rng, long), pick(rng, TOPICS));
        let needed = filled_len(template, topic) + usize::from(!text.is_empty());
        let fits_half = text.len() + needed / 2 <= target;
        if !text.is_empty() && (!fits_half || text.len() + needed > MAX_COMMENT) {
            break;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        fill(text, template, topic);
    }
}

/// A log-normal draw (Box–Muller), in whole characters, within 2..=MAX_COMMENT.
fn comment_length(rng: &mut impl Rng) -> usize {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1], so ln is finite
    let u2: f64 = rng.random();
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let length = (MEDIAN_LENGTH.ln() + LENGTH_SIGMA * normal).exp();
    // Clamped first, so the cast only drops the fraction.
    length.clamp(2.0, MAX_COMMENT as f64) as usize
}

const TOPIC: &str = "{topic}";

/// The length of `template` once `fill` has put `topic` into it.
fn filled_len(template: &str, topic: &str) -> usize {
    match split_at_topic(template) {
        Some(_) => template.len() - TOPIC.len() + topic.len(),
        None => template.len(),
    }
}

/// The parts of `template` before and after its `{topic}`. Templates hold no other `{`,
/// so a byte search finds it: a substring search was 5 % of a load's CPU.
fn split_at_topic(template: &str) -> Option<(&str, &str)> {
    let at = template.find('{')?;
    debug_assert!(template[at..].starts_with(TOPIC), "{template}");
    Some((&template[..at], &template[at + TOPIC.len()..]))
}

/// Appends `template` with the topic put into it, capitalised when it starts the
/// sentence; writes straight into `out`, since this runs once per sentence of 150M
/// reviews.
fn fill(out: &mut String, template: &str, topic: &str) {
    let Some((before, after)) = split_at_topic(template) else {
        out.push_str(template);
        return;
    };
    out.push_str(before);
    let mut chars = topic.chars();
    if let Some(first) = chars.next() {
        out.push(if before.is_empty() {
            first.to_ascii_uppercase()
        } else {
            first
        });
    }
    out.push_str(chars.as_str());
    out.push_str(after);
}

const FIRST_NAMES: &[&str] = &[
    "Amara", "Ben", "Chen", "Dalia", "Emeka", "Fatima", "Gustavo", "Hana", "Ivan", "Jamal",
    "Keiko", "Lars", "Maya", "Nikhil", "Olga", "Pablo", "Qi", "Rosa", "Samir", "Tatiana", "Umar",
    "Vera", "William", "Ximena", "Yusuf", "Zoe", "Aisha", "Bruno", "Chloe", "Diego", "Elena",
    "Felix", "Grace", "Hugo", "Ingrid", "Jonas", "Kofi", "Lucia", "Mateo", "Nadia",
];
const LAST_NAMES: &[&str] = &[
    "Adeyemi",
    "Bauer",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fernandes",
    "Garcia",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kim",
    "Lopez",
    "Mbeki",
    "Novak",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rossi",
    "Sato",
    "Thompson",
    "Usman",
    "Varga",
    "Wang",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Andersson",
    "Brown",
    "Chowdhury",
    "Dimitrov",
    "Evans",
    "Fischer",
    "Gupta",
    "Hernandez",
    "Ito",
    "Johnson",
    "Kowalski",
    "Li",
    "Martin",
    "Nguyen",
];

/// "First Last", sometimes "First L." as people often sign reviews.
pub fn name(rng: &mut impl Rng) -> String {
    let first = pick(rng, FIRST_NAMES);
    let last = pick(rng, LAST_NAMES);
    if rng.random_bool(0.2) {
        format!("{first} {}.", &last[..1])
    } else {
        format!("{first} {last}")
    }
}

/// An avatar URL for most reviewers, else a CSS colour for a coloured initial.
pub fn picture(rng: &mut impl Rng, id: i64) -> String {
    if rng.random_bool(0.7) {
        format!(
            "https://images.courser.example/avatars/{id}-{:08x}.jpg",
            rng.random::<u32>()
        )
    } else {
        format!("#{:06x}", rng.random::<u32>() & 0x00ff_ffff)
    }
}

fn pick<'a>(rng: &mut impl Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn comment_lengths_are_long_tailed_around_a_median_of_80() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut text = String::new();
        let mut lengths: Vec<usize> = (0..20_000)
            .map(|i| {
                comment(&mut rng, 2 + (i % 9) as i16, &mut text);
                text.len()
            })
            .collect();
        lengths.sort_unstable();
        let median = lengths[lengths.len() / 2];
        let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        let max = lengths[lengths.len() - 1];
        assert!((70..=90).contains(&median), "median {median}");
        assert!((135.0..=165.0).contains(&mean), "mean {mean}");
        assert!(max <= MAX_COMMENT && max > 700, "max {max}");
        assert!(lengths[0] >= 2, "min {}", lengths[0]);
    }

    #[test]
    fn comments_are_plain_single_line_text() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut text = String::new();
        for half_stars in 2..=10 {
            comment(&mut rng, half_stars, &mut text);
            assert!(!text.contains(['\t', '\n', '\\', '{']), "{text}");
            assert!(text.ends_with(['.', '!']), "{text}");
        }
    }

    #[test]
    fn topics_are_filled_in_and_capitalised_at_the_start() {
        let mut out = String::new();
        fill(&mut out, "{topic} was great.", "the videos");
        out.push(' ');
        fill(&mut out, "I liked {topic} a lot.", "the videos");
        assert_eq!(out, "The videos was great. I liked the videos a lot.");
        assert_eq!(
            filled_len("I liked {topic} a lot.", "the videos"),
            "I liked the videos a lot.".len()
        );
    }

    #[test]
    fn pictures_are_https_urls_or_hex_colours() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for id in 1..200 {
            let picture = picture(&mut rng, id);
            let colour = picture.len() == 7
                && picture.starts_with('#')
                && picture[1..].chars().all(|c| c.is_ascii_hexdigit());
            assert!(colour || picture.starts_with("https://"), "{picture}");
        }
    }
}
