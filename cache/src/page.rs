//! A course page as the cache holds it: a skeleton of JSON byte runs with the reviewers
//! left as references, so that a reviewer's change is one fragment to drop rather than
//! every page that shows them. Serving a page splices bytes; it does no JSON work.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One run of a skeleton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// JSON text, copied as it is.
    Json(Bytes),
    /// The JSON of this reviewer goes here.
    Reviewer(i64),
}

/// A page with its reviewers left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skeleton {
    pub parts: Vec<Part>,
}

/// A page ready to send: the body and its strong ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub body: Bytes,
    /// Quoted, as the header carries it.
    pub etag: String,
}

impl Skeleton {
    pub fn push_json(&mut self, json: impl Into<Bytes>) {
        self.parts.push(Part::Json(json.into()));
    }

    pub fn push_reviewer(&mut self, id: i64) {
        self.parts.push(Part::Reviewer(id));
    }

    pub fn reviewers(&self) -> impl Iterator<Item = i64> + '_ {
        self.parts.iter().filter_map(|part| match part {
            Part::Reviewer(id) => Some(*id),
            Part::Json(_) => None,
        })
    }

    /// Bytes held, for the in-process tier's budget.
    pub fn weight(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Json(bytes) => bytes.len() + 16,
                Part::Reviewer(_) => 16,
            })
            .sum()
    }

    /// The page, with `reviewer` giving each reviewer's JSON; `None` if one is missing.
    pub fn assemble<'a>(&self, mut reviewer: impl FnMut(i64) -> Option<&'a [u8]>) -> Option<Page> {
        let mut body = BytesMut::with_capacity(self.weight());
        for part in &self.parts {
            match part {
                Part::Json(bytes) => body.put_slice(bytes),
                Part::Reviewer(id) => body.put_slice(reviewer(*id)?),
            }
        }
        let body = body.freeze();
        let etag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&body));
        Some(Page { body, etag })
    }

    /// Binary form for Redis: a generation, then tagged parts.
    pub(crate) fn encode(&self, generation: u64) -> Bytes {
        let mut out = BytesMut::with_capacity(self.weight() + 12);
        out.put_u64_le(generation);
        for part in &self.parts {
            match part {
                Part::Json(bytes) => {
                    out.put_u8(0);
                    out.put_u32_le(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
                    out.put_slice(bytes);
                }
                Part::Reviewer(id) => {
                    out.put_u8(1);
                    out.put_i64_le(*id);
                }
            }
        }
        out.freeze()
    }

    /// The generation and skeleton of `encode`'s output; `None` if it is not one.
    pub(crate) fn decode(mut input: Bytes) -> Option<(u64, Self)> {
        if input.remaining() < 8 {
            return None;
        }
        let generation = input.get_u64_le();
        let mut parts = Vec::new();
        while input.has_remaining() {
            match input.get_u8() {
                0 if input.remaining() >= 4 => {
                    let len = input.get_u32_le() as usize;
                    if input.remaining() < len {
                        return None;
                    }
                    parts.push(Part::Json(input.split_to(len)));
                }
                1 if input.remaining() >= 8 => parts.push(Part::Reviewer(input.get_i64_le())),
                _ => return None,
            }
        }
        Some((generation, Self { parts }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Skeleton {
        let mut skeleton = Skeleton::default();
        skeleton.push_json(&b"{\"reviews\":[{\"reviewer\":"[..]);
        skeleton.push_reviewer(7);
        skeleton.push_json(&b"}]}"[..]);
        skeleton
    }

    #[test]
    fn a_skeleton_survives_its_binary_form() {
        let skeleton = sample();
        assert_eq!(Skeleton::decode(skeleton.encode(42)), Some((42, skeleton)));
        assert_eq!(Skeleton::decode(Bytes::from_static(b"short")), None);
        let mut truncated = sample().encode(1).to_vec();
        truncated.pop();
        assert_eq!(Skeleton::decode(truncated.into()), None);
    }

    #[test]
    fn assembly_splices_reviewers_and_tags_the_bytes() {
        let page = sample()
            .assemble(|id| (id == 7).then_some(&b"{\"id\":7}"[..]))
            .unwrap();
        assert_eq!(&page.body[..], b"{\"reviews\":[{\"reviewer\":{\"id\":7}}]}");
        let other = sample().assemble(|_| Some(&b"{\"id\":8}"[..])).unwrap();
        assert_ne!(page.etag, other.etag);
        assert!(sample().assemble(|_| None).is_none());
    }
}
