// The writer: byte-identical round trips of files written by llama.cpp, every value
// type through the reader, layout rules, atomic replacement and its errors.
#include "testing.h"

#include "toyllm/gguf.h"

#include <gtest/gtest.h>

namespace {

using toyllm::DType;
using toyllm::GgufErrc;
using toyllm::GgufFile;
using toyllm::GgufType;
using toyllm::GgufWriter;
namespace fs = std::filesystem;

std::vector<fs::path> reference_ggufs() {
    auto files = toyllm::testing::shared_files("testdata/vocab", ".gguf");
    const auto models = toyllm::testing::shared_files("models/stories260K", ".gguf");
    files.insert(files.end(), models.begin(), models.end());
    return files;
}

TEST(GgufWrite, RoundTripOfEveryReferenceFileIsByteIdentical) {
    const auto files = reference_ggufs();
    ASSERT_EQ(files.size(), 15u);
    toyllm::testing::TempDir tmp;
    for (const fs::path & p : files) {
        SCOPED_TRACE(p.string());
        const auto original = toyllm::testing::read_file_bytes(p);
        const GgufFile f = GgufFile::open(p.string());
        const GgufWriter w = GgufWriter::copy_of(f);
        const auto out = w.to_bytes();
        ASSERT_EQ(out.size(), original.size());
        EXPECT_TRUE(out == original) << "first difference at byte "
                                     << (std::mismatch(out.begin(), out.end(), original.begin()).first - out.begin());
        const fs::path copy = tmp / p.filename().string();
        w.write(copy.string());
        EXPECT_TRUE(toyllm::testing::read_file_bytes(copy) == original);
    }
}

// A tiny file with one key of every type, read back through the reader.
TEST(GgufWrite, EveryValueTypeSurvivesTheReader) {
    GgufWriter w;
    const float f32s[] = {1.5f, -2.25f, 1e-30f};
    const int32_t i32s[] = {-7, 0, 2147483647};
    w.set_string("general.architecture", "llama");
    w.set_u32("a.u32", 4000000000u);
    w.set_i32("a.i32", -5);
    w.set_u64("a.u64", 1ull << 40);
    w.set_f32("a.f32", 0.125f);
    w.set_bool("a.bool", true);
    w.set_strings("a.strs", {"", "héllo", std::string("nul\0inside", 10)});
    w.set_array("a.f32s", GgufType::FLOAT32, f32s, 3);
    w.set_array("a.i32s", GgufType::INT32, i32s, 3);
    const auto bytes = w.to_bytes();
    const GgufFile f = GgufFile::from_bytes(bytes, "types.gguf");

    ASSERT_EQ(f.kvs().size(), 9u);
    EXPECT_EQ(f.kvs()[0].key, "general.architecture");
    EXPECT_EQ(f.kvs()[8].key, "a.i32s");
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    EXPECT_EQ(f.get_u32("a.u32"), 4000000000u);
    EXPECT_EQ(f.find("a.i32")->as_int(), -5);
    EXPECT_EQ(f.find("a.u64")->scalar_as<uint64_t>(), 1ull << 40);
    EXPECT_EQ(f.get_f32("a.f32"), 0.125f);
    EXPECT_TRUE(f.get_bool("a.bool"));
    const auto & strs = f.get_array("a.strs", GgufType::STRING);
    ASSERT_EQ(strs.count, 3u);
    EXPECT_EQ(strs.strs[0], "");
    EXPECT_EQ(strs.strs[1], "héllo");
    EXPECT_EQ(strs.strs[2], std::string_view("nul\0inside", 10));
    const auto & fa = f.get_array("a.f32s", GgufType::FLOAT32);
    EXPECT_EQ(fa.at<float>(1), -2.25f);
    EXPECT_EQ(fa.at<float>(2), 1e-30f);
    EXPECT_EQ(f.get_array("a.i32s", GgufType::INT32).at<int32_t>(2), 2147483647);
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_EQ(f.data_offset(), bytes.size());  // no data section without tensors
}

TEST(GgufWrite, SettingAKeyAgainReplacesItInPlace) {
    GgufWriter w;
    w.set_u32("first", 1);
    w.set_u32("second", 2);
    w.set_string("first", "now a string");
    const auto bytes = w.to_bytes();
    const GgufFile f = GgufFile::from_bytes(bytes);
    ASSERT_EQ(f.kvs().size(), 2u);
    EXPECT_EQ(f.kvs()[0].key, "first");
    EXPECT_EQ(f.get_string("first"), "now a string");
    w.remove("first");
    EXPECT_EQ(GgufFile::from_bytes(w.to_bytes()).kvs().size(), 1u);
}

TEST(GgufWrite, TensorsAreAlignedAndPaddedToTheAlignment) {
    GgufWriter w;
    w.set_u32("general.alignment", 64);
    std::vector<uint8_t> a(3 * 4, 0xAA);       // f32 [3]
    std::vector<uint8_t> b(2 * 34, 0xBB);      // q8_0 [32, 2]
    const int64_t ne_a[] = {3};
    const int64_t ne_b[] = {32, 2};
    w.add_tensor("a", DType::F32, ne_a, a);
    w.add_tensor("b", DType::Q8_0, ne_b, b);
    const auto bytes = w.to_bytes();
    const GgufFile f = GgufFile::from_bytes(bytes);
    EXPECT_EQ(f.alignment(), 64u);
    EXPECT_EQ(f.data_offset() % 64, 0u);
    ASSERT_EQ(f.tensors().size(), 2u);
    EXPECT_EQ(f.tensors()[0].offset, 0u);
    EXPECT_EQ(f.tensors()[1].offset, 64u);
    EXPECT_EQ(bytes.size(), f.data_offset() + 64 + 128);  // the last tensor is padded too
    const auto db = f.tensor_data(f.get_tensor("b"));
    EXPECT_TRUE(std::equal(db.begin(), db.end(), b.begin(), b.end()));
    EXPECT_EQ(bytes[f.data_offset() + 12], 0);  // padding is zeros
}

template <class F> void expect_gguf_error(GgufErrc code, const std::string & needle, F && f) {
    try {
        f();
        ADD_FAILURE() << "no error, expected: " << needle;
    } catch (const toyllm::GgufError & e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(GgufWrite, RejectsInvalidTensorsAndKeys) {
    GgufWriter w;
    std::vector<uint8_t> data(34);
    const int64_t ne_ok[] = {32};
    const int64_t ne_odd[] = {33};
    const int64_t ne_5d[] = {32, 1, 1, 1, 1};
    const int64_t ne_zero[] = {32, 0};
    w.add_tensor("t", DType::Q8_0, ne_ok, data);
    expect_gguf_error(GgufErrc::DUPLICATE_TENSOR, "'t'", [&] { w.add_tensor("t", DType::Q8_0, ne_ok, data); });
    expect_gguf_error(GgufErrc::BAD_BLOCK, "33", [&] { w.add_tensor("u", DType::Q8_0, ne_odd, data); });
    expect_gguf_error(GgufErrc::BAD_DIMS, "5 dims", [&] { w.add_tensor("u", DType::Q8_0, ne_5d, data); });
    expect_gguf_error(GgufErrc::BAD_DIMS, "dimension 0", [&] { w.add_tensor("u", DType::Q8_0, ne_zero, data); });
    expect_gguf_error(GgufErrc::BAD_TENSOR, "33 bytes", [&] {
        w.add_tensor("u", DType::Q8_0, ne_ok, std::span(data).first(33));
    });
    expect_gguf_error(GgufErrc::BAD_ALIGNMENT, "48", [&] { w.set_u32("general.alignment", 48); });
    expect_gguf_error(GgufErrc::WRONG_KEY_TYPE, "u32", [&] { w.set_u64("general.alignment", 32); });
    EXPECT_THROW(GgufWriter(1), toyllm::GgufError);
}

TEST(GgufWrite, WriteReplacesAtomicallyAndLeavesNoTemporaryFiles) {
    toyllm::testing::TempDir tmp;
    const fs::path target = tmp / "model.gguf";
    GgufWriter w;
    w.set_string("general.name", "first");
    w.write(target.string());
    w.set_string("general.name", "second");
    w.write(target.string());
    EXPECT_EQ(GgufFile::open(target.string()).get_string("general.name"), "second");
    size_t n_files = 0;
    for ([[maybe_unused]] const auto & e : fs::directory_iterator(tmp.path())) ++n_files;
    EXPECT_EQ(n_files, 1u);
}

TEST(GgufWrite, WriteIntoAMissingDirectoryFailsWithTheReason) {
    toyllm::testing::TempDir tmp;
    GgufWriter w;
    const fs::path target = tmp / "no-such-dir" / "x.gguf";
    try {
        w.write(target.string());
        FAIL() << "no error";
    } catch (const toyllm::IoError & e) {
        EXPECT_NE(std::string(e.what()).find("no-such-dir"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(target));
}

}  // namespace
