//! Demo mode (`mock-llm --demo`): answers worth reading instead of filler.
//!
//! The panel models (`mock-a`, `mock-b`, `mock-c`, any other name by hash)
//! answer a few built-in questions with fixed, plausible, partly conflicting
//! texts, and unknown questions with sensible generic ones. Every sentence of
//! those texts stands for a claim of a small catalog, so the demo judge can
//! read the answers it was actually given, find which claims each one makes
//! and derive the five-key analysis from that: `contradictions` and
//! `unique_insights` name real differences between the responses present,
//! and a claim no response makes is a blind spot. The outer model's final
//! answer is written from the analysis in the fusion tool result.
//!
//! Without `--demo` nothing here runs: the tests rely on the filler answers.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Value};

use crate::convo::{Answer, Convo, Role};
use crate::script::Script;

static ON: AtomicBool = AtomicBool::new(false);

/// Turns demo mode on for the whole process (`--demo`).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Demo pacing, so that a run looks like one: panel members answer at
/// different speeds and the final answer streams word by word. A `latency`
/// or `chunk_delay` directive of the request (or `/__mock/script`) wins.
pub fn paced(mut script: Script) -> Script {
    if !on() {
        return script;
    }
    let (latency, chunk) = match script.base.as_str() {
        "mock-a" => (500, 15),
        "mock-b" => (800, 15),
        "mock-c" => (1200, 15),
        "mock-judge" => (600, 10),
        "mock-outer" => (300, 10),
        _ => (400, 15),
    };
    // An error answer (`status=429`, …) comes back fast, as a provider's would.
    let failing = script.status.is_some_and(|s| s != 200);
    if script.latency_ms == 0 {
        script.latency_ms = if failing { 50 } else { latency };
    }
    if script.chunk_delay_ms == 0 {
        script.chunk_delay_ms = chunk;
    }
    script
}

/// In demo mode, replaces the text of a text answer by the demo's own (judge
/// analysis, final answer from a tool result, merge synthesis, panel answer).
/// Tool calls, empty answers and the judge's `prose`/`fenced` scripts stay.
pub fn dress(convo: &Convo, script: &Script, model: &str, answer: Answer) -> Answer {
    if !on() {
        return answer;
    }
    match answer {
        Answer::Text(t) if !t.is_empty() => Answer::Text(reply(convo, script, model).unwrap_or(t)),
        other => other,
    }
}

fn reply(convo: &Convo, script: &Script, model: &str) -> Option<String> {
    if is_judge(convo) {
        if script.prose || script.fenced {
            return None;
        }
        let responses = judge_responses(&judge_text(convo));
        return Some(analysis(&responses).to_string());
    }
    if let Some(result) = convo.pending_tool_result() {
        return Some(final_answer(convo.last_user_text(), result));
    }
    let last = convo.last_user_text();
    if last.contains("## Answers") && last.contains("### Answer ") {
        return Some(synthesis(&sections(last, "### Answer ")));
    }
    Some(panel_answer(last, model))
}

// ---------------------------------------------------------------------------
// The catalog

/// One claim an answer can make.
struct Claim {
    id: &'static str,
    /// What the claim is about; two claims on one topic contradict each other.
    topic: &'static str,
    /// The claim as a clause ("blue light scatters more ...").
    summary: &'static str,
    /// False for a claim that is wrong or doubtful.
    sound: bool,
}

/// A built-in question: the words that recognise it, its claims, a one-line
/// answer, and per demo model the sentences of its answer, each tagged with
/// the claim it makes ("" for a sentence that makes none).
struct Question {
    keywords: &'static [&'static str],
    short: &'static str,
    claims: &'static [Claim],
    answers: [&'static [(&'static str, &'static str)]; 3],
}

const fn claim(id: &'static str, topic: &'static str, summary: &'static str, sound: bool) -> Claim {
    Claim {
        id,
        topic,
        summary,
        sound,
    }
}

const SKY: Question = Question {
    keywords: &["sky", "blue"],
    short: "The sky is blue because the molecules of the air scatter short-wavelength (blue) sunlight far more than long-wavelength (red) light.",
    claims: &[
        claim("rayleigh", "the cause", "air molecules scatter short (blue) wavelengths far more than long (red) ones (Rayleigh scattering)", true),
        claim("violet_eye", "why the sky is not violet", "sunlight carries less violet than blue and the eye is much less sensitive to violet", true),
        claim("violet_ozone", "why the sky is not violet", "the ozone layer absorbs the violet light", false),
        claim("sunset", "sunsets", "at sunrise and sunset the light crosses much more air, loses its blue and leaves reds and oranges", true),
        claim("mie", "clouds", "cloud droplets and dust are large enough to scatter all colours about equally (Mie scattering), so clouds and haze look white", true),
        claim("sea_reflect", "why the sea is blue", "the sea is blue mostly because it reflects the sky", false),
        claim("sea_absorb", "why the sea is blue", "the sea's own blue comes mostly from water absorbing red light", true),
        claim("polarized", "polarization", "scattered skylight is partly polarized, most strongly 90 degrees away from the Sun", true),
        claim("horizon", "the horizon", "the sky is paler near the horizon because light scattered many times along a long path mixes back towards white", true),
    ],
    answers: [
        &[
            ("", "Sunlight is a mix of all colours."),
            ("rayleigh", "As it passes through the air it bounces off nitrogen and oxygen molecules, and that scattering (Rayleigh scattering) is much stronger for short wavelengths, roughly as 1/λ⁴, so blue light is spread across the whole sky."),
            ("violet_eye", "Violet scatters even more, but the Sun emits less of it and our eyes are far less sensitive to it, so the sky looks blue rather than violet."),
            ("sunset", "At sunrise and sunset the light crosses much more air, the blue is scattered out along the way, and the reds and oranges are what is left."),
        ],
        &[
            ("rayleigh", "The blue comes from Rayleigh scattering: air molecules are much smaller than the wavelength of light and deflect short wavelengths far more than long ones."),
            ("violet_ozone", "The sky is not violet because the ozone layer absorbs most of the violet light before it reaches us."),
            ("sea_reflect", "The sea looks blue for the same reason: it mostly reflects the blue sky above it."),
            ("mie", "Clouds, on the other hand, are white because their droplets are large enough to scatter all colours about equally (Mie scattering)."),
        ],
        &[
            ("rayleigh", "Molecules in the atmosphere scatter blue light about five times more strongly than red light, so wherever you look away from the Sun you see scattered blue."),
            ("violet_eye", "We do not see a violet sky mainly because of our eyes: the cones respond weakly to violet, and sunlight has less violet than blue to begin with."),
            ("sunset", "The same effect paints sunsets red, because the low Sun's light travels through far more atmosphere and loses its blue."),
            ("sea_absorb", "The sea's own blue is mostly water absorbing red light, not a reflection of the sky."),
        ],
    ],
};

const LANG: Question = Question {
    keywords: &["rust", "go"],
    short: "Both are good choices for a web service; Go gets a team productive sooner, Rust pays off where latency, memory or correctness matter most.",
    claims: &[
        claim("both_fine", "the verdict", "both are solid, production-proven choices for a web service", true),
        claim("go_faster_dev", "development speed", "Go gets a team productive faster: a small language, fast builds and a batteries-included standard library", true),
        claim("rust_faster_dev", "development speed", "Rust is just as fast to develop in once the team is past the learning curve", false),
        claim("rust_perf", "performance", "Rust has no garbage collector, which gives lower and more predictable tail latency and memory use", true),
        claim("go_gc_fine", "performance", "Go's garbage collector pauses are sub-millisecond and rarely matter for a web service", true),
        claim("rust_safety", "correctness", "Rust's type system and borrow checker rule out data races and many bugs at compile time", true),
        claim("hiring", "hiring", "Go developers are easier to hire and onboard", true),
        claim("ecosystem", "ecosystem", "Go's ecosystem for cloud services (Kubernetes clients, gRPC, observability) is the more mature one", true),
        claim("team_skill", "the team", "what the team already knows matters more than the language itself", true),
        claim("ops", "operations", "both compile to a single static binary that is easy to deploy", true),
    ],
    answers: [
        &[
            ("both_fine", "Both are solid, production-proven choices for a web service."),
            ("go_faster_dev", "Go will get your team productive faster: the language is small, builds are quick and the standard library already has an HTTP server."),
            ("go_gc_fine", "Its garbage collector pauses are well under a millisecond these days, so for a typical API they are not a concern."),
            ("hiring", "Go developers are also easier to hire and onboard."),
        ],
        &[
            ("both_fine", "Either language will serve you well for a web service."),
            ("rust_perf", "Rust has no garbage collector, so tail latency and memory use are lower and more predictable, which matters at scale."),
            ("rust_safety", "Its type system and borrow checker catch data races and whole classes of bugs at compile time."),
            ("rust_faster_dev", "Once the team is past the learning curve, development in Rust is just as fast as in Go."),
        ],
        &[
            ("", "Pick based on your constraints rather than on benchmarks."),
            ("go_faster_dev", "If you need to ship quickly with a mixed team, Go's simplicity and fast compile times are hard to beat."),
            ("rust_perf", "If the service is latency-critical or memory-bound, Rust's lack of a garbage collector gives you more predictable performance."),
            ("team_skill", "Above all, what your team already knows will matter more than the language."),
            ("ops", "Both compile to a single static binary, so deployment is equally easy."),
        ],
    ],
};

const COFFEE: Question = Question {
    keywords: &["coffee"],
    short: "For most healthy adults, moderate coffee (about 3 to 4 cups a day) is fine and is linked with some benefits; pregnancy, sleep and anxiety are the main reasons to cut back.",
    claims: &[
        claim("moderate_ok", "the verdict", "moderate intake, about 3 to 4 cups a day, is safe for most healthy adults", true),
        claim("longevity", "benefits", "observational studies link moderate coffee drinking with lower mortality and lower risk of type 2 diabetes", true),
        claim("causal", "the evidence", "coffee has been proven to make people live longer", false),
        claim("observational", "the evidence", "the evidence is mostly observational, so it shows association, not cause", true),
        claim("sleep", "sleep", "caffeine late in the day disrupts sleep, since its half-life is about five hours", true),
        claim("pregnancy", "pregnancy", "during pregnancy caffeine should be limited to about 200 mg a day", true),
        claim("dehydrate", "hydration", "coffee dehydrates you, so it does not count towards daily fluids", false),
        claim("hydrate_ok", "hydration", "at normal intake coffee hydrates about as well as water", true),
        claim("genetics", "genetics", "people metabolise caffeine at very different speeds because of genetic differences (CYP1A2)", true),
        claim("additives", "additives", "sugar and cream can outweigh the benefits of the coffee itself", true),
    ],
    answers: [
        &[
            ("moderate_ok", "For most healthy adults, three to four cups a day is considered safe."),
            ("longevity", "Large observational studies link moderate coffee drinking with lower overall mortality and a lower risk of type 2 diabetes."),
            ("sleep", "The main downside is sleep: caffeine has a half-life of about five hours, so an afternoon cup can still affect your night."),
        ],
        &[
            ("moderate_ok", "In moderation, up to about 400 mg of caffeine or roughly four cups a day, coffee is fine for most adults."),
            ("causal", "Studies have shown that coffee drinkers live longer, so it is one of the healthier habits you can have."),
            ("dehydrate", "Keep in mind that coffee dehydrates you, so it should not count towards your daily fluids."),
            ("pregnancy", "Pregnant women should stay under about 200 mg of caffeine a day."),
        ],
        &[
            ("moderate_ok", "Moderate coffee intake looks safe and possibly beneficial for most people."),
            ("observational", "Most of the evidence is observational, so it shows an association with better health, not that coffee causes it."),
            ("hydrate_ok", "Contrary to a common belief, at normal intake coffee hydrates about as well as water."),
            ("sleep", "Avoid it late in the day if you sleep badly."),
            ("additives", "What you add matters too: sugar and cream can easily outweigh any benefit."),
        ],
    ],
};

const SLEEP: Question = Question {
    keywords: &["sleep"],
    short: "Most adults need 7 to 9 hours of sleep a night; regular timing and quality matter as well as the total.",
    claims: &[
        claim("seven_nine", "the amount", "most adults need 7 to 9 hours a night", true),
        claim("six_enough", "the amount", "6 hours is enough for most adults once they get used to it", false),
        claim("regular", "timing", "a regular schedule matters as much as the total", true),
        claim("deficit", "sleep debt", "chronic short sleep is linked to worse attention, mood, metabolism and immunity", true),
        claim("catch_up", "sleep debt", "you can fully catch up on lost sleep at the weekend", false),
        claim("older", "age", "older adults tend to sleep less but do not need much less", true),
        claim("short_sleepers", "genetics", "a rare genetic variant lets a few people thrive on about 6 hours", true),
        claim("apnea", "sleep disorders", "persistent tiredness despite enough hours can be a sign of sleep apnea", true),
    ],
    answers: [
        &[
            ("seven_nine", "Most adults need between seven and nine hours a night."),
            ("deficit", "Regularly sleeping less is linked to poorer attention, mood, metabolism and immune function."),
            ("regular", "Going to bed and waking at consistent times matters as much as the total."),
        ],
        &[
            ("seven_nine", "The usual recommendation is seven to nine hours for adults."),
            ("catch_up", "If you miss sleep during the week, you can fully make up for it by sleeping in at the weekend."),
            ("older", "Older adults often sleep less, but their need does not drop much."),
        ],
        &[
            ("six_enough", "Six hours is enough for most adults once their body adapts to it."),
            ("short_sleepers", "Some people carry a rare gene variant that genuinely lets them thrive on about six hours."),
            ("deficit", "Chronic short sleep does add up, though, and is linked to health problems."),
        ],
    ],
};

const ROME: Question = Question {
    keywords: &["roman", "empire"],
    short: "There was no single cause: the Western Roman Empire fell in 476 from a mix of political instability, economic strain and military pressure from migrating peoples.",
    claims: &[
        claim("many_causes", "the cause", "there was no single cause but a combination of internal and external pressures", true),
        claim("barbarians", "the cause", "the decisive cause was the invasions by Germanic peoples", false),
        claim("instability", "politics", "constant civil wars and short-lived emperors weakened the state", true),
        claim("economy", "economy", "debased coinage, heavy taxes and disrupted trade drained the economy", true),
        claim("split", "the east", "only the Western Empire fell in 476; the Eastern (Byzantine) Empire lasted until 1453", true),
        claim("lead", "lead", "lead poisoning from water pipes brought Rome down", false),
        claim("climate", "climate", "climate change and the Antonine and Justinianic plagues weakened the population", true),
        claim("transformation", "interpretation", "many historians now describe a gradual transformation rather than a sudden fall", true),
        claim("army", "the army", "the army came to rely on hired Germanic federates whose loyalty was to their own leaders", true),
    ],
    answers: [
        &[
            ("many_causes", "There was no single cause; historians point to a combination of pressures."),
            ("instability", "Decades of civil wars and short-lived emperors left the state weak."),
            ("economy", "Debased coinage and heavy taxation drained the economy."),
            ("split", "Note that only the Western Empire fell, in 476; the Eastern Empire lasted until 1453."),
        ],
        &[
            ("barbarians", "Rome fell because of the invasions of Germanic peoples such as the Goths and Vandals, which culminated in the deposition of the last Western emperor in 476."),
            ("lead", "Lead poisoning from the water pipes had weakened the ruling class long before."),
            ("split", "The Eastern half survived as the Byzantine Empire for almost a thousand more years."),
        ],
        &[
            ("many_causes", "Most historians see a mix of internal weakness and outside pressure."),
            ("economy", "Economic strain, with inflation and disrupted trade, hollowed out the tax base that paid the army."),
            ("climate", "Plagues and a cooling climate also reduced the population."),
            ("transformation", "Many scholars now speak of a gradual transformation into successor kingdoms rather than a sudden fall."),
        ],
    ],
};

/// Unknown questions: generic advice that still differs and partly conflicts.
/// The first sentence of each answer quotes the question (no claim).
const GENERIC: Question = Question {
    keywords: &[],
    short: "There is no built-in demo answer for this question, so the panel gave general advice.",
    claims: &[
        claim("depends", "the verdict", "the right answer depends on your context and what you can afford to get wrong", true),
        claim("simple_first", "the approach", "the simplest explanation that fits what you know is the place to start", true),
        claim("beware_simple", "the approach", "the simplest explanation is usually incomplete, since real questions have several interacting causes", true),
        claim("primary", "sources", "a primary source should be checked before relying on any summary", true),
        claim("summary_ok", "sources", "a reputable summary is good enough and primary sources are rarely worth the time", false),
        claim("tradeoffs", "deciding", "writing down the options and what each costs makes the trade-off visible", true),
        claim("expert", "advice", "when the stakes are high, someone who has done it before is worth asking", true),
        claim("specifics", "specifics", "the demo models only know a few built-in questions (for example \"Why is the sky blue?\"), so none of the answers is specific", true),
    ],
    answers: [
        &[
            ("simple_first", "Start from the simplest explanation that fits what you already know, then test it against one concrete example."),
            ("primary", "Check a primary source, such as the documentation, the data or the original paper, before relying on any summary, including this one."),
            ("depends", "In the end the right answer depends on your context and on what you can afford to get wrong."),
        ],
        &[
            ("depends", "It depends on what you are optimising for."),
            ("summary_ok", "For most everyday questions a reputable summary is good enough; chasing primary sources is rarely worth the time."),
            ("tradeoffs", "Write down the two or three options and what each costs you: the trade-off usually becomes obvious on paper."),
        ],
        &[
            ("beware_simple", "Be wary of the simplest explanation: most real questions have several interacting causes."),
            ("tradeoffs", "List the options side by side with their costs and risks."),
            ("expert", "If the stakes are high, ask someone who has done it before; a short conversation beats hours of reading."),
        ],
    ],
};

const QUESTIONS: [&Question; 5] = [&SKY, &LANG, &COFFEE, &SLEEP, &ROME];

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The built-in question `prompt` asks, or the generic one.
fn question_for(prompt: &str) -> &'static Question {
    let w = words(prompt);
    QUESTIONS
        .iter()
        .copied()
        .find(|q| q.keywords.iter().all(|k| w.iter().any(|x| x == k)))
        .unwrap_or(&GENERIC)
}

/// Which of the three demo answers a model gives: `…-a`, `…-b`, `…-c` by
/// their letter, any other name by a hash of it.
fn variant(model: &str) -> usize {
    let base = model.split(':').next().unwrap_or(model);
    match base.rsplit('-').next() {
        Some("a") => 0,
        Some("b") => 1,
        Some("c") => 2,
        _ => (fnv(base) % 3) as usize,
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn panel_answer(prompt: &str, model: &str) -> String {
    let q = question_for(prompt);
    let sentences = q.answers.get(variant(model)).copied().unwrap_or(&[]);
    let body = sentences
        .iter()
        .map(|(_, s)| *s)
        .collect::<Vec<_>>()
        .join(" ");
    if q.keywords.is_empty() {
        format!("On \"{}\": {body}", quote(prompt))
    } else {
        body.to_string()
    }
}

/// The prompt on one line, at most 80 characters.
fn quote(prompt: &str) -> String {
    let one_line = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut q: String = one_line.chars().take(80).collect();
    if one_line.chars().count() > 80 {
        q.push('…');
    }
    if q.is_empty() {
        q.push_str("your question");
    }
    q
}

// ---------------------------------------------------------------------------
// The judge

fn is_judge(convo: &Convo) -> bool {
    const KEY: &str = "blind_spots";
    convo.system.contains(KEY)
        || convo
            .messages
            .iter()
            .any(|(r, t)| *r != Role::Tool && t.contains(KEY))
}

fn judge_text(convo: &Convo) -> String {
    let mut all = convo.system.clone();
    for (role, text) in &convo.messages {
        if *role != Role::Tool {
            all.push('\n');
            all.push_str(text);
        }
    }
    all
}

/// The texts after each `<mark><n>` heading, in order.
/// The responses in a judge prompt: the filter encloses each in
/// `<response-NONCE n="N">` ... `</response-NONCE>` (opening tags start a line);
/// older prompts used `### Response N` headings.
fn judge_responses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("\n<response-") {
        let after = &rest[start + 1..];
        let Some(open_end) = after.find(">\n") else {
            break;
        };
        let tag = after[1..open_end].split(' ').next().unwrap_or("");
        let body = &after[open_end + 2..];
        let close = format!("\n</{tag}>");
        let Some(end) = body.find(&close) else { break };
        out.push(body[..end].trim().to_string());
        rest = &body[end + close.len()..];
    }
    if out.is_empty() {
        return sections(text, "### Response ");
    }
    out
}

fn sections(text: &str, mark: &str) -> Vec<String> {
    let mut parts = text.split(mark);
    parts.next();
    parts
        .map(|p| {
            // Drop the number on the heading line.
            let body = p.split_once('\n').map_or("", |(_, rest)| rest);
            body.trim().to_string()
        })
        .collect()
}

/// Which claims of `q` a text makes.
fn claims_in(q: &Question, text: &str) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = Vec::new();
    for answer in q.answers {
        for (id, sentence) in answer {
            if !id.is_empty() && text.contains(sentence) && !ids.contains(id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// The question whose claims the responses make most.
fn question_of(responses: &[String]) -> Option<&'static Question> {
    QUESTIONS
        .iter()
        .copied()
        .chain(std::iter::once(&GENERIC))
        .map(|q| {
            let hits: usize = responses.iter().map(|r| claims_in(q, r).len()).sum();
            (q, hits)
        })
        .filter(|(_, hits)| *hits > 0)
        .max_by_key(|(_, hits)| *hits)
        .map(|(q, _)| q)
}

/// "Response 2", "Responses 1 and 3", "Responses 1, 2 and 4".
fn who(idx: &[usize]) -> String {
    let names: Vec<String> = idx.iter().map(|i| (i + 1).to_string()).collect();
    match names.as_slice() {
        [one] => format!("Response {one}"),
        [init @ .., last] => format!("Responses {} and {last}", init.join(", ")),
        [] => "No response".to_string(),
    }
}

fn all_of(n: usize) -> String {
    match n {
        1 => "The only response".to_string(),
        2 => "Both responses".to_string(),
        _ => format!("All {n} responses"),
    }
}

/// The five-key analysis of the responses present.
pub fn analysis(responses: &[String]) -> Value {
    let Some(q) = question_of(responses) else {
        return unknown_analysis(responses);
    };
    let n = responses.len();
    let held: Vec<Vec<&str>> = responses.iter().map(|r| claims_in(q, r)).collect();
    let holders = |id: &str| -> Vec<usize> {
        held.iter()
            .enumerate()
            .filter(|(_, h)| h.contains(&id))
            .map(|(i, _)| i)
            .collect()
    };
    let mut consensus = Vec::new();
    let mut contradictions = Vec::new();
    let mut partial = Vec::new();
    let mut unique = Vec::new();
    let mut blind = Vec::new();
    let mut done_topics: Vec<&str> = Vec::new();
    for c in q.claims {
        let by = holders(c.id);
        if by.is_empty() {
            // Only a sound claim nobody makes is a blind spot.
            let rival_made = q
                .claims
                .iter()
                .any(|o| o.topic == c.topic && !holders(o.id).is_empty());
            if c.sound && !rival_made {
                blind.push(format!("No response mentions that {}.", c.summary));
            }
            continue;
        }
        let rivals: Vec<&Claim> = q
            .claims
            .iter()
            .filter(|o| o.topic == c.topic && !holders(o.id).is_empty())
            .collect();
        if rivals.len() > 1 {
            if done_topics.contains(&c.topic) {
                continue;
            }
            done_topics.push(c.topic);
            let sides: Vec<String> = rivals
                .iter()
                .map(|o| format!("{} that {}", say(&holders(o.id)), o.summary))
                .collect();
            let sound: Vec<usize> = rivals
                .iter()
                .filter(|o| o.sound)
                .flat_map(|o| holders(o.id))
                .collect();
            let verdict = if sound.is_empty()
                || sound.len() == rivals.iter().map(|o| holders(o.id).len()).sum::<usize>()
            {
                "The evidence does not settle it; it depends on the case.".to_string()
            } else {
                format!(
                    "{} {} better supported.",
                    who(&sound),
                    if sound.len() == 1 { "is" } else { "are" }
                )
            };
            contradictions.push(format!("On {}: {}. {verdict}", c.topic, sides.join("; ")));
            continue;
        }
        if !c.sound {
            contradictions.push(format!(
                "{} that {}, which is doubtful and no other response supports.",
                say(&by),
                c.summary
            ));
        } else if by.len() == n {
            consensus.push(format!("{} say that {}.", all_of(n), c.summary));
        } else if by.len() == 1 {
            unique.push(format!("Only {} notes that {}.", who(&by), c.summary));
        } else {
            let missing: Vec<usize> = (0..n).filter(|i| !by.contains(i)).collect();
            partial.push(format!(
                "{} note that {}; {} does not.",
                who(&by),
                c.summary,
                who(&missing)
            ));
        }
    }
    json!({
        "consensus": consensus,
        "contradictions": contradictions,
        "partial_coverage": partial,
        "unique_insights": unique,
        "blind_spots": blind,
    })
}

/// "Response 2 says", "Responses 1 and 3 say".
fn say(idx: &[usize]) -> String {
    let verb = if idx.len() == 1 { "says" } else { "say" };
    format!("{} {verb}", who(idx))
}

/// Answers the demo does not know: compare by length and shared sentences.
fn unknown_analysis(responses: &[String]) -> Value {
    let n = responses.len();
    let mut unique = Vec::new();
    for (i, r) in responses.iter().enumerate() {
        if let Some(first) = first_sentence(r) {
            let shared = responses
                .iter()
                .enumerate()
                .any(|(j, o)| j != i && o.contains(first.as_str()));
            if !shared {
                unique.push(format!("Only Response {} says: \"{first}\"", i + 1));
            }
        }
    }
    let longest = responses
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| r.split_whitespace().count())
        .map(|(i, _)| i);
    let partial = match longest {
        Some(i) if n > 1 => vec![format!("Response {} is the most detailed.", i + 1)],
        _ => Vec::new(),
    };
    json!({
        "consensus": [format!("{} address the question.", all_of(n.max(1)))],
        "contradictions": [],
        "partial_coverage": partial,
        "unique_insights": unique,
        "blind_spots": ["No response cites a source."],
    })
}

fn first_sentence(text: &str) -> Option<String> {
    let t = text.trim();
    let end = t.find(['.', '!', '?']).map_or(t.len(), |i| i + 1);
    let s = t.get(..end)?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

// ---------------------------------------------------------------------------
// The outer model and the merge synthesis

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The outer model's answer after the fusion tool result, written from it.
fn final_answer(question: &str, tool_result: &str) -> String {
    let Ok(result) = serde_json::from_str::<Value>(tool_result) else {
        return format!(
            "The fusion tool returned something I cannot read, so this answer is my own. {}",
            panel_answer(question, "mock-a")
        );
    };
    let failed: Vec<String> = result
        .get("failed_models")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|f| {
                    format!(
                        "{} ({})",
                        f.get("model").and_then(Value::as_str).unwrap_or("?"),
                        f.get("reason").and_then(Value::as_str).unwrap_or("failed")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if result.get("status").and_then(Value::as_str) != Some("ok") {
        let reason = result
            .get("failure_reason")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        return format!(
            "The panel could not answer (failure_reason: {reason}), so this answer is mine alone. {}",
            panel_answer(question, "mock-a")
        );
    }
    let responses: Vec<(String, String)> = result
        .get("responses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|r| {
                    let field =
                        |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (field("model"), field("content"))
                })
                .collect()
        })
        .unwrap_or_default();
    let models: Vec<&str> = responses.iter().map(|(m, _)| m.as_str()).collect();
    let mut out = String::new();
    let texts: Vec<String> = responses.iter().map(|(_, t)| t.clone()).collect();
    if let Some(q) = question_of(&texts).filter(|q| !q.keywords.is_empty()) {
        out.push_str(q.short);
        out.push_str("\n\n");
    }
    // The judge numbers the answers; the outer model knows which model wrote which.
    let labels: Vec<String> = models
        .iter()
        .enumerate()
        .map(|(i, m)| format!("Response {} is {m}", i + 1))
        .collect();
    let mut who = labels.join(", ");
    if !failed.is_empty() {
        who.push_str(&format!("; failed: {}", failed.join(", ")));
    }
    let Some(analysis) = result.get("analysis") else {
        out.push_str(&format!(
            "I asked a panel of {} models ({who}). The judge's analysis did not come back, \
             so here are their answers as given:",
            models.len() + failed.len()
        ));
        for (i, (m, t)) in responses.iter().enumerate() {
            out.push_str(&format!("\n\n{}. {m}: {t}", i + 1));
        }
        return out;
    };
    out.push_str(&format!(
        "I asked a panel of {} models and a judge compared their answers ({who}):",
        models.len() + failed.len()
    ));
    let sections = [
        ("consensus", "What they agree on"),
        ("contradictions", "Where they disagree, and whom I follow"),
        ("unique_insights", "Worth adding"),
        ("partial_coverage", "Covered by only some"),
        ("blind_spots", "What none of them mentioned"),
    ];
    for (key, title) in sections {
        let items = strings(analysis.get(key));
        if items.is_empty() {
            continue;
        }
        out.push_str(&format!("\n\n{title}:"));
        for item in items {
            out.push_str(&format!("\n- {item}"));
        }
    }
    out
}

/// Merge mode: the synthesis model writes one answer from the numbered answers.
fn synthesis(answers: &[String]) -> String {
    let Some(q) = question_of(answers) else {
        let firsts: Vec<String> = answers.iter().filter_map(|a| first_sentence(a)).collect();
        return firsts.join(" ");
    };
    let held: Vec<Vec<&str>> = answers.iter().map(|a| claims_in(q, a)).collect();
    let made = |id: &str| held.iter().any(|h| h.contains(&id));
    let mut out = String::new();
    if !q.keywords.is_empty() {
        out.push_str(q.short);
    }
    // Keep every sound claim some answer makes; drop the doubtful ones.
    for c in q.claims.iter().filter(|c| c.sound && made(c.id)) {
        let mut s = c.summary.to_string();
        if let Some(first) = s.get(..1) {
            s = format!("{}{}", first.to_uppercase(), s.get(1..).unwrap_or(""));
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&s);
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(q: &str) -> Vec<String> {
        ["mock-a", "mock-b", "mock-c"]
            .iter()
            .map(|m| panel_answer(q, m))
            .collect()
    }

    #[test]
    fn panel_answers_differ_per_model() {
        let p = panel("Why is the sky blue?");
        assert_ne!(p[0], p[1]);
        assert_ne!(p[1], p[2]);
        assert!(p[0].contains("Rayleigh"), "{}", p[0]);
        assert_eq!(variant("mock-b:latency=5"), 1);
        let g = panel_answer("How do I price my SaaS?", "mock-c");
        assert!(
            g.starts_with("On \"How do I price my SaaS?\": Be wary"),
            "{g}"
        );
    }

    #[test]
    fn every_answer_sentence_names_a_claim_of_its_question() {
        for q in QUESTIONS.iter().copied().chain(std::iter::once(&GENERIC)) {
            for answer in q.answers {
                for (id, _) in answer {
                    assert!(
                        id.is_empty() || q.claims.iter().any(|c| c.id == *id),
                        "{id}"
                    );
                }
            }
        }
    }

    #[test]
    fn judge_names_the_real_differences() {
        let a = analysis(&panel("Why is the sky blue?"));
        let consensus = strings(a.get("consensus"));
        assert_eq!(consensus.len(), 1);
        assert!(consensus[0].starts_with("All 3 responses say that air molecules scatter"));
        let contra = strings(a.get("contradictions"));
        assert_eq!(contra.len(), 2, "{contra:?}");
        assert!(contra[0].contains("not violet") && contra[0].contains("Responses 1 and 3 say"));
        assert!(contra[0].ends_with("Responses 1 and 3 are better supported."));
        assert!(contra[1].contains("Response 3 is better supported"));
        assert_eq!(
            strings(a.get("unique_insights")),
            vec!["Only Response 2 notes that cloud droplets and dust are large enough to scatter all colours about equally (Mie scattering), so clouds and haze look white."]
        );
        assert!(strings(a.get("partial_coverage"))[0]
            .starts_with("Responses 1 and 3 note that at sunrise"));
        assert_eq!(strings(a.get("blind_spots")).len(), 2);
    }

    #[test]
    fn judge_follows_the_responses_present() {
        // mock-c failed: its claims are gone, the contradiction on the sea too.
        let p = panel("Why is the sky blue?");
        let a = analysis(&p[..2]);
        assert!(strings(a.get("consensus"))[0].starts_with("Both responses"));
        let contra = strings(a.get("contradictions"));
        assert!(contra.iter().any(|c| c.contains("Response 2 says that the sea is blue mostly because it reflects the sky, which is doubtful")), "{contra:?}");
        assert!(strings(a.get("unique_insights"))
            .iter()
            .any(|u| u.contains("sunrise")));
    }

    #[test]
    fn generic_and_unknown_answers_get_an_analysis() {
        let a = analysis(&panel("What is the best way to learn piano?"));
        assert!(!strings(a.get("contradictions")).is_empty());
        let u = analysis(&["Yes. It is.".to_string(), "No.".to_string()]);
        assert_eq!(strings(u.get("unique_insights")).len(), 2);
    }

    #[test]
    fn final_answer_uses_the_analysis() {
        let p = panel("Why is the sky blue?");
        let result = json!({
            "status": "ok",
            "analysis": analysis(&p[..2]),
            "responses": [{"model": "mock-a", "content": p[0]}, {"model": "mock-b", "content": p[1]}],
            "failed_models": [{"model": "mock-c", "reason": "rate_limited"}],
        });
        let f = final_answer("Why is the sky blue?", &result.to_string());
        assert!(f.starts_with("The sky is blue because"), "{f}");
        assert!(
            f.contains("I asked a panel of 3 models and a judge compared their answers (Response 1 is mock-a, Response 2 is mock-b; failed: mock-c (rate_limited)):"),
            "{f}"
        );
        assert!(
            f.contains("Where they disagree, and whom I follow:\n- On why the sky is not violet")
        );
        let err = final_answer("q", r#"{"status":"error","failure_reason":"rate_limited"}"#);
        assert!(err.contains("failure_reason: rate_limited"));
    }

    #[test]
    fn synthesis_keeps_sound_claims_only() {
        let s = synthesis(&panel("Why is the sky blue?"));
        assert!(s.contains("Mie scattering") && !s.contains("ozone"), "{s}");
    }

    #[test]
    fn judge_responses_read_the_tagged_blocks() {
        let t = "## Responses\n\nEach response is enclosed in <response-ab n=\"N\"> ... </response-ab>.\n\n<response-ab n=\"1\">\nfirst\n</response-ab>\n\n<response-ab n=\"2\">\nsecond\n### Response 9\n</response-ab>\n";
        assert_eq!(judge_responses(t), vec!["first", "second\n### Response 9"]);
    }

    #[test]
    fn sections_split_on_headings() {
        let t = "## Responses\n\n### Response 1\n\nfirst\n\n### Response 2\n\nsecond\n";
        assert_eq!(sections(t, "### Response "), vec!["first", "second"]);
    }
}
