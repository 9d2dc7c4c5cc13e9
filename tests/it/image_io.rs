//! PNG grids, GIF trajectories and .npy round trips (checked against numpy's byte layout).

use std::path::PathBuf;

use diffuse::image_io;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-io-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn npy_round_trips_and_matches_numpys_layout() {
    let dir = scratch("npy");
    let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    let path = dir.join("x.npy");
    image_io::write_npy(&path, &[2, 3, 4], &data).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // numpy.save writes exactly this header for a (2, 3, 4) float32 array: format 1.0, the dict, spaces and a
    // newline up to a multiple of 64 bytes (10 + 62 + 1 = 73 → 128), then the data.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }";
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]) as usize + 10, 128);
    assert_eq!(&bytes[10..10 + header.len()], header.as_bytes());
    assert_eq!(bytes[127], b'\n');
    assert_eq!(bytes.len(), 128 + 24 * 4);
    assert_eq!(image_io::read_npy(&path).unwrap(), (vec![2, 3, 4], data));
    image_io::write_npy(&path, &[5], &[1.0; 5]).unwrap();
    assert_eq!(image_io::read_npy(&path).unwrap().0, vec![5]);
}

#[test]
fn npy_errors_name_the_problem() {
    let dir = scratch("npy-bad");
    let path = dir.join("bad.npy");
    std::fs::write(&path, b"not numpy").unwrap();
    assert!(image_io::read_npy(&path)
        .unwrap_err()
        .to_string()
        .contains("magic"));
    let mut ints = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }          \n";
    ints.extend_from_slice(&(header.len() as u16).to_le_bytes());
    ints.extend_from_slice(header.as_bytes());
    ints.extend_from_slice(&[0; 16]);
    std::fs::write(&path, &ints).unwrap();
    assert!(image_io::read_npy(&path)
        .unwrap_err()
        .to_string()
        .contains("<i8"));
    image_io::write_npy(&path, &[4, 4], &[0.0; 16]).unwrap();
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 8]).unwrap();
    assert!(image_io::read_npy(&path)
        .unwrap_err()
        .to_string()
        .contains("truncated"));
}

#[test]
fn grids_place_each_image_and_map_minus_one_to_black() {
    // Two 2×2 grayscale images: all −1 (black) and all +1 (white), in a 2-column grid with 2-pixel borders.
    let pixels = [vec![-1.0f32; 4], vec![1.0; 4]].concat();
    let img = image_io::grid(&pixels, 2, 1, 2, 2);
    assert_eq!(img.dimensions(), (2 * 4 + 2, 4 + 2));
    assert_eq!(img.get_pixel(2, 2).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(6, 3).0, [255, 255, 255]);
    let dir = scratch("grid");
    image_io::save_grid_png(&dir.join("g.png"), &pixels, 2, 1, 2, None).unwrap();
    let back = image::open(dir.join("g.png")).unwrap().to_rgb8();
    assert_eq!(back.get_pixel(6, 3).0, [255, 255, 255]);
    image_io::save_gif(
        &dir.join("t.gif"),
        &[pixels.clone(), pixels.clone()],
        2,
        1,
        2,
        None,
        50,
    )
    .unwrap();
    assert!(std::fs::metadata(dir.join("t.gif")).unwrap().len() > 0);
    // The bytes a page shows are the files' bytes.
    let png = image_io::grid_png(&pixels[..8], 2, 1, 2, None).unwrap();
    assert_eq!(png, std::fs::read(dir.join("g.png")).unwrap());
    let frames = [pixels[..8].to_vec(), pixels[..8].to_vec()];
    let gif = image_io::gif_bytes(&frames, 2, 1, 2, None, 50).unwrap();
    assert_eq!(gif, std::fs::read(dir.join("t.gif")).unwrap());
}

#[test]
fn an_npy_shape_whose_size_overflows_is_a_clear_error() {
    let dir = scratch("npy-huge");
    let path = dir.join("huge.npy");
    // 2^62 · 8 elements of 4 bytes: 2^67 bytes, which wrapped to 0 before the product was checked.
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 8), }}\n",
        1u64 << 62
    );
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = image_io::read_npy(&path).unwrap_err().to_string();
    assert!(
        err.contains("overflows") && err.contains("huge.npy"),
        "{err}"
    );
}
