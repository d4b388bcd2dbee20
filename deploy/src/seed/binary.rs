//! Rows in COPY's binary format (the PostgreSQL manual, "COPY", "Binary Format"): a
//! header, then per row a field count and each field as a length and its bytes in the
//! type's binary send format, then a trailer. The server does no text parsing, which is
//! much of what makes binary COPY fast.

/// Unix time of the PostgreSQL epoch, 2000-01-01 00:00:00 UTC, in seconds.
const PG_EPOCH_UNIX: i64 = 946_684_800;
/// Type oid of `int4`, named in every binary array.
const INT4_OID: i32 = 23;

/// The start of a binary COPY stream: signature, flags (no oids), no header extension.
pub fn header() -> [u8; 19] {
    *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"
}

/// The end of a binary COPY stream.
pub fn trailer() -> [u8; 2] {
    (-1i16).to_be_bytes()
}

/// A buffer of rows in binary COPY format, appended with [`Rows::row`] and the field
/// writers; a stream is [`header`], the rows, then [`trailer`].
#[derive(Debug)]
pub struct Rows {
    buf: Vec<u8>,
}

impl Rows {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Hands the bytes over and leaves an empty buffer of the same capacity.
    pub fn take(&mut self) -> Vec<u8> {
        let capacity = self.buf.capacity();
        std::mem::replace(&mut self.buf, Vec::with_capacity(capacity))
    }

    /// Starts a row of `fields` fields; exactly that many field writes must follow.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn int4(&mut self, value: i32) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn int2(&mut self, value: i16) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.field(&[u8::from(value)])
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.field(value.as_bytes())
    }

    /// A `timestamptz` from Unix seconds: microseconds since the PostgreSQL epoch.
    pub fn timestamptz(&mut self, unix_seconds: i64) -> &mut Self {
        self.int8((unix_seconds - PG_EPOCH_UNIX) * 1_000_000)
    }

    /// A one-dimensional `integer[]` without nulls, lower bound 1.
    pub fn int4_array(&mut self, values: &[i32]) -> &mut Self {
        let len = i32::try_from(values.len()).unwrap_or(i32::MAX);
        // ndim, has-nulls flag, element type, then the dimension's size and lower bound,
        // then each element as a field.
        self.len_prefix(20 + 8 * len);
        for header in [1, 0, INT4_OID, len, 1] {
            self.buf.extend_from_slice(&header.to_be_bytes());
        }
        for value in values {
            self.int4(*value);
        }
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.len_prefix(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
        self.buf.extend_from_slice(bytes);
        self
    }

    fn len_prefix(&mut self, len: i32) {
        self.buf.extend_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rows_and_fields_are_laid_out_as_the_manual_says() {
        let mut rows = Rows::new(64);
        rows.row(3).int8(7).text("hé").bool(true);
        assert_eq!(header().as_slice(), b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0");
        assert_eq!(trailer(), [0xff, 0xff]);
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        expected.extend_from_slice(&[0, 0, 0, 3, b'h', 0xc3, 0xa9]);
        expected.extend_from_slice(&[0, 0, 0, 1, 1]);
        assert_eq!(rows.take(), expected);
        assert!(rows.is_empty());
    }

    #[test]
    fn timestamps_count_microseconds_from_2000() {
        let mut rows = Rows::new(16);
        rows.timestamptz(PG_EPOCH_UNIX + 1);
        assert_eq!(rows.take(), [0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]);
    }

    #[test]
    fn arrays_carry_dimensions_and_element_type() {
        let mut rows = Rows::new(64);
        rows.int4_array(&[5, -1]);
        let bytes = rows.take();
        let words: Vec<i32> = bytes
            .chunks(4)
            .map(|w| i32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        assert_eq!(words, [36, 1, 0, 23, 2, 1, 4, 5, 4, -1]);
    }
}
