//! Unit tests of the header.

use super::*;

fn parsed<H: LengthPrefix>(bytes: &[u8]) -> Result<Parsed, DecodeError> {
    H::parse(bytes)
}

fn complete(value: u64, header_len: usize) -> Result<Parsed, DecodeError> {
    Ok(Parsed::Complete { value, header_len })
}

#[test]
fn big_endian_vectors() {
    assert_eq!(&*BigEndian::<4>::emit(0x0102_0304).unwrap(), &[1, 2, 3, 4]);
    assert_eq!(&*BigEndian::<2>::emit(300).unwrap(), &[0x01, 0x2c]);
    assert_eq!(&*BigEndian::<1>::emit(255).unwrap(), &[0xff]);
    assert_eq!(BigEndian::<1>::emit(256), None);
    assert_eq!(
        &*BigEndian::<3>::emit(0x0a0b0c).unwrap(),
        &[0x0a, 0x0b, 0x0c]
    );
    assert_eq!(
        &*BigEndian::<8>::emit(u64::MAX).unwrap(),
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(parsed::<BigEndian<4>>(&[0, 0, 1, 0, 9]), complete(256, 4));
    assert_eq!(parsed::<BigEndian<4>>(&[0, 0, 1]), Ok(Parsed::Incomplete));
    assert_eq!(parsed::<BigEndian<8>>(&[0xff; 8]), complete(u64::MAX, 8));
}

#[test]
fn little_endian_vectors() {
    assert_eq!(
        &*LittleEndian::<4>::emit(0x0102_0304).unwrap(),
        &[4, 3, 2, 1]
    );
    assert_eq!(&*LittleEndian::<2>::emit(300).unwrap(), &[0x2c, 0x01]);
    assert_eq!(LittleEndian::<2>::emit(65536), None);
    assert_eq!(parsed::<LittleEndian<3>>(&[1, 2, 3]), complete(0x030201, 3));
    assert_eq!(
        parsed::<LittleEndian<7>>(&[1, 2, 3]),
        Ok(Parsed::Incomplete)
    );
}

#[test]
fn varint32_vectors() {
    assert_eq!(&*Varint32::emit(5).unwrap(), &[5]);
    assert_eq!(&*Varint32::emit(300).unwrap(), &[0xac, 0x02]);
    assert_eq!(
        &*Varint32::emit(u64::from(u32::MAX)).unwrap(),
        &[0xff, 0xff, 0xff, 0xff, 0x0f]
    );
    assert_eq!(Varint32::emit(u64::from(u32::MAX) + 1), None);
    // Non-minimal encodings are accepted, as protobuf does.
    assert_eq!(parsed::<Varint32>(&[0x85, 0x00]), complete(5, 2));
    assert_eq!(parsed::<Varint32>(&[0xac, 0x02, 0xff]), complete(300, 2));
    assert_eq!(
        parsed::<Varint32>(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
        complete(u64::from(u32::MAX), 5)
    );
    assert_eq!(
        parsed::<Varint32>(&[0xff, 0xff, 0xff, 0xff, 0x10]),
        Err(DecodeError::VarintOverflow)
    );
    assert_eq!(
        parsed::<Varint32>(&[0xff, 0xff, 0xff, 0xff, 0x8f]),
        Err(DecodeError::VarintOverflow)
    );
    assert_eq!(
        parsed::<Varint32>(&[0x80, 0x80, 0x80, 0x80]),
        Ok(Parsed::Incomplete)
    );
    assert_eq!(parsed::<Varint32>(&[]), Ok(Parsed::Incomplete));
    assert_eq!(Varint32::header_len(127), 1);
    assert_eq!(Varint32::header_len(128), 2);
}

#[test]
fn varint64_vectors() {
    let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(&*Varint64::emit(u64::MAX).unwrap(), &max);
    assert_eq!(parsed::<Varint64>(&max), complete(u64::MAX, 10));
    let mut over = max;
    over[9] = 0x02;
    assert_eq!(parsed::<Varint64>(&over), Err(DecodeError::VarintOverflow));
    assert_eq!(parsed::<Varint64>(&[0x80; 9]), Ok(Parsed::Incomplete));
    assert_eq!(
        parsed::<Varint64>(&[0x80; 10]),
        Err(DecodeError::VarintOverflow)
    );
    assert_eq!(Varint64::header_len(0), 1);
    assert_eq!(Varint64::header_len(u64::MAX), 10);
}

#[test]
fn buffstreams_vectors() {
    type Go = BuffStreams<{ buffstreams_header_len(4096) }>;
    assert_eq!(buffstreams_header_len(4096), 3);
    assert_eq!(buffstreams_header_len(0), 2);
    assert_eq!(buffstreams_header_len(1), 2);
    assert_eq!(buffstreams_header_len(256), 3);
    assert_eq!(&*Go::emit(11).unwrap(), &[0x16, 0x00, 0x00]);
    assert_eq!(&*Go::emit(300).unwrap(), &[0xd8, 0x04, 0x00]);
    assert_eq!(&*Go::emit(4096).unwrap(), &[0x80, 0x40, 0x00]);
    assert_eq!(parsed::<Go>(&[0x16, 0x00, 0x00]), complete(11, 3));
    assert_eq!(parsed::<Go>(&[0xd8, 0x04, 0x00]), complete(300, 3));
    assert_eq!(parsed::<Go>(&[0x80, 0x40, 0x00]), complete(4096, 3));
    assert_eq!(parsed::<Go>(&[0x80, 0x40]), Ok(Parsed::Incomplete));
    // zigzag(-1) = 1
    assert_eq!(
        parsed::<Go>(&[0x01, 0x00, 0x00]),
        Err(DecodeError::NegativeLength)
    );
    // Varint not finished inside the 3 header bytes.
    assert_eq!(
        parsed::<Go>(&[0x80, 0x80, 0x80]),
        Err(DecodeError::VarintOverflow)
    );
    assert_eq!(Go::MAX_VALUE, (1 << 20) - 1);
    assert!(Go::emit(1 << 20).is_none());
    assert_eq!(BuffStreams::<10>::MAX_VALUE, i64::MAX as u64);
    let h = BuffStreams::<10>::emit(i64::MAX as u64).unwrap();
    assert_eq!(parsed::<BuffStreams<10>>(&h), complete(i64::MAX as u64, 10));
}
