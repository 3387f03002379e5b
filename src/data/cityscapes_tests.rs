//! Tests of the dataset readers: small datasets written into temporary folders, the error cases, and
//! the committed sample set (calibration/sample).

use super::*;
use image::{GrayImage, Luma, Rgb, RgbImage};
use std::fs;

fn write_image(path: &Path, w: u32, h: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb([10, 200, 30]))
        .save(path)
        .unwrap();
}

fn write_label(path: &Path, w: u32, h: u32, value: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_pixel(w, h, Luma([value]))
        .save(path)
        .unwrap();
}

/// ROOT/leftImg8bit/{split}/{city}/... with labels; `frames` per city.
fn cityscapes_tree(root: &Path, split: &str, cities: &[&str], frames: usize) {
    for city in cities {
        for f in 0..frames {
            let stem = format!("{city}_000000_{f:06}");
            write_image(
                &root
                    .join("leftImg8bit")
                    .join(split)
                    .join(city)
                    .join(format!("{stem}_leftImg8bit.png")),
                8,
                4,
            );
            write_label(
                &root
                    .join("gtFine")
                    .join(split)
                    .join(city)
                    .join(format!("{stem}_gtFine_labelIds.png")),
                8,
                4,
                26,
            );
        }
    }
}

fn label_path(root: &Path, split: &str, city: &str, frame: usize) -> PathBuf {
    root.join("gtFine")
        .join(split)
        .join(city)
        .join(format!("{city}_000000_{frame:06}_gtFine_labelIds.png"))
}

#[test]
fn label_table_matches_cityscapes() {
    assert_eq!(LABEL_TO_TRAIN[7], 0); // road
    assert_eq!(LABEL_TO_TRAIN[23], 10); // sky
    assert_eq!(LABEL_TO_TRAIN[26], 13); // car
    assert_eq!(LABEL_TO_TRAIN[33], 18); // bicycle
    for not_evaluated in [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255] {
        assert_eq!(
            LABEL_TO_TRAIN[not_evaluated], IGNORE,
            "labelId {not_evaluated}"
        );
    }
    let mut train_ids: Vec<u8> = LABEL_TO_TRAIN
        .iter()
        .copied()
        .filter(|&t| t != IGNORE)
        .collect();
    train_ids.sort();
    assert_eq!(train_ids, (0..19).collect::<Vec<u8>>());
}

#[test]
fn cityscapes_pairs_images_with_labels_and_maps_ids() {
    let dir = tempfile::tempdir().unwrap();
    cityscapes_tree(dir.path(), "val", &["bonn", "aachen"], 2);
    let ds = Dataset::open(dir.path(), Some("val")).unwrap();
    assert_eq!(
        ds.layout,
        Layout::Cityscapes {
            split: "val".into()
        }
    );
    assert_eq!(ds.samples.len(), 4);
    assert!(ds.problems.is_empty());
    assert_eq!(ds.groups(), vec!["aachen", "bonn"]);
    let loaded = ds
        .load(&ds.samples[0], Some((2, 4)), ImageLimits::default())
        .unwrap();
    assert_eq!(loaded.input.shape, vec![1, 3, 2, 4]);
    assert_eq!(loaded.image_size, (8, 4));
    // Labels keep the full resolution whatever the input size.
    let labels = loaded.labels.unwrap();
    assert_eq!((labels.width, labels.height), (8, 4));
    assert!(labels.data.iter().all(|&v| v == 13)); // labelId 26 (car) is trainId 13
}

#[test]
fn selection_is_round_robin_over_sorted_cities() {
    let dir = tempfile::tempdir().unwrap();
    cityscapes_tree(dir.path(), "train", &["c", "a"], 3);
    cityscapes_tree(dir.path(), "train", &["b"], 1);
    let ds = Dataset::cityscapes(dir.path(), "train").unwrap();
    let picked: Vec<String> = ds.select(5).iter().map(|s| file_name(&s.image)).collect();
    assert_eq!(
        picked,
        [
            "a_000000_000000_leftImg8bit.png",
            "b_000000_000000_leftImg8bit.png",
            "c_000000_000000_leftImg8bit.png",
            "a_000000_000001_leftImg8bit.png",
            "c_000000_000001_leftImg8bit.png",
        ]
    );
    assert_eq!(ds.select(100).len(), 7);
    assert!(ds.select(0).is_empty());
    // keep_selection keeps the same five, in sorted order.
    let mut kept = Dataset::cityscapes(dir.path(), "train").unwrap();
    kept.keep_selection(5);
    let names: Vec<String> = kept.samples.iter().map(|s| file_name(&s.image)).collect();
    let mut want = picked.clone();
    want.sort();
    assert_eq!(names, want);
    kept.keep_selection(100);
    assert_eq!(kept.samples.len(), 5);
}

#[test]
fn image_without_label_is_skipped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    cityscapes_tree(dir.path(), "train", &["a"], 2);
    let orphan = label_path(dir.path(), "train", "a", 1);
    fs::remove_file(&orphan).unwrap();
    let ds = Dataset::cityscapes(dir.path(), "train").unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(ds.problems.len(), 1);
    let msg = ds.problems[0].to_string();
    assert!(msg.contains("a_000000_000001_leftImg8bit.png"), "{msg}");
    assert!(msg.contains("gtFine_labelIds.png"), "{msg}");

    // With every label gone the set is unusable, and the error says why.
    fs::remove_file(label_path(dir.path(), "train", "a", 0)).unwrap();
    let e = Dataset::cityscapes(dir.path(), "train").unwrap_err();
    assert!(matches!(e, DatasetError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("no label file"), "{e}");
}

#[test]
fn a_split_without_a_gtfine_folder_is_read_unlabelled() {
    let dir = tempfile::tempdir().unwrap();
    cityscapes_tree(dir.path(), "train_extra", &["a", "b"], 2);
    fs::remove_dir_all(dir.path().join("gtFine/train_extra")).unwrap();
    let ds = Dataset::cityscapes(dir.path(), "train_extra").unwrap();
    assert_eq!(ds.samples.len(), 4);
    assert!(ds.samples.iter().all(|s| s.label.is_none()));
    assert!(ds.problems.is_empty());
    // Calibration loads them like any other image.
    let (loaded, problems) = ds
        .load_selection(4, Some((4, 8)), ImageLimits::default())
        .unwrap();
    assert_eq!((loaded.len(), problems.len()), (4, 0));
}

#[test]
fn label_of_another_size_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    cityscapes_tree(dir.path(), "train", &["a"], 1);
    let label = label_path(dir.path(), "train", "a", 0);
    write_label(&label, 16, 8, 7);
    let ds = Dataset::cityscapes(dir.path(), "train").unwrap();
    let e = ds
        .load(&ds.samples[0], None, ImageLimits::default())
        .unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::SizeMismatch {
                label_w: 16,
                image_w: 8,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("gtFine_labelIds.png"), "{e}");
    // load_selection reports it and, with nothing else to load, fails as a whole.
    let e = ds
        .load_selection(1, None, ImageLimits::default())
        .unwrap_err();
    assert!(e.to_string().contains("16x8"), "{e}");
}

#[test]
fn corrupt_png_and_rgb_label_are_named() {
    let dir = tempfile::tempdir().unwrap();
    cityscapes_tree(dir.path(), "train", &["a"], 3);
    let ds = Dataset::cityscapes(dir.path(), "train").unwrap();
    fs::write(&ds.samples[0].image, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let label = ds.samples[1].label.clone().unwrap();
    write_image(&label, 8, 4); // a colour map where labelIds belong
    let e = ds
        .load(&ds.samples[0], None, ImageLimits::default())
        .unwrap_err();
    assert!(matches!(e, DatasetError::Image(_)), "{e}");
    assert!(
        e.to_string().contains("a_000000_000000_leftImg8bit.png"),
        "{e}"
    );
    let e = ds
        .load(&ds.samples[1], None, ImageLimits::default())
        .unwrap_err();
    assert!(matches!(e, DatasetError::BadLabel { .. }), "{e}");
    assert!(e.to_string().contains("a_000000_000001_gtFine"), "{e}");
    // The one good sample still loads; the two bad ones come back as problems.
    let (loaded, problems) = ds
        .load_selection(3, Some((4, 8)), ImageLimits::default())
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(problems.len(), 2);
}

#[test]
fn missing_or_empty_folders_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = Dataset::cityscapes(dir.path(), "train").unwrap_err();
    assert!(matches!(e, DatasetError::Folder { .. }), "{e}");
    assert!(e.to_string().contains("leftImg8bit"), "{e}");
    let e = Dataset::image_folder(dir.path()).unwrap_err();
    assert!(matches!(e, DatasetError::Empty { first: None, .. }), "{e}");
    fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    assert!(Dataset::open(dir.path(), None).is_err());
}

#[test]
fn image_folder_groups_by_subfolder() {
    let dir = tempfile::tempdir().unwrap();
    write_image(&dir.path().join("z.png"), 4, 4);
    write_image(&dir.path().join("cam1/b.PNG"), 4, 4);
    write_image(&dir.path().join("cam1/a.png"), 4, 4);
    write_image(&dir.path().join("cam0/x.jpg"), 4, 4);
    fs::write(dir.path().join("cam0/readme.md"), "#").unwrap();
    let ds = Dataset::open(dir.path(), Some("train")).unwrap();
    assert_eq!(ds.layout, Layout::ImageFolder);
    assert_eq!(ds.groups(), vec!["", "cam0", "cam1"]);
    let picked: Vec<String> = ds.select(4).iter().map(|s| file_name(&s.image)).collect();
    assert_eq!(picked, ["z.png", "x.jpg", "a.png", "b.PNG"]);
    let l = ds
        .load(&ds.samples[0], Some((8, 8)), ImageLimits::default())
        .unwrap();
    assert!(l.labels.is_none());
    assert_eq!(l.input.shape, vec![1, 3, 8, 8]);
}

fn sample_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/sample")
}

#[test]
fn committed_sample_set_has_the_documented_shape() {
    let train = Dataset::open(&sample_root(), Some("train")).unwrap();
    assert_eq!(train.samples.len(), 120);
    assert!(train.problems.is_empty(), "{:?}", train.problems);
    assert_eq!(train.groups(), vec!["aachen", "bremen", "zurich"]);
    let val = Dataset::cityscapes(&sample_root(), "val").unwrap();
    assert_eq!(val.samples.len(), 30);
    assert_eq!(val.groups(), vec!["frankfurt", "munster"]);

    // 32 spread over three cities: 11 + 11 + 10.
    let picked = train.select(32);
    for (city, want) in [("aachen", 11), ("bremen", 11), ("zurich", 10)] {
        assert_eq!(picked.iter().filter(|s| s.group == city).count(), want);
    }

    let mut seen = [false; NUM_CLASSES];
    for s in &val.samples {
        let l = val
            .load(s, Some((128, 256)), ImageLimits::default())
            .unwrap();
        assert_eq!(l.image_size, (512, 256));
        assert_eq!(l.input.shape, vec![1, 3, 128, 256]);
        for &v in &l.labels.unwrap().data {
            assert!(v < NUM_CLASSES as u8 || v == IGNORE, "trainId {v}");
            if v != IGNORE {
                seen[v as usize] = true;
            }
        }
    }
    // The generator draws every evaluated class; the common ones must appear in val.
    for class in [0, 1, 2, 8, 9, 10, 11, 13] {
        assert!(seen[class], "{} never appears in val", CLASS_NAMES[class]);
    }
}
