// Frame encoding: headers through Boost.Serialization binary archives, payloads copied raw.
#include "ppmpi/core/protocol.hpp"

#include <algorithm>
#include <array>
#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/archive/impl/basic_binary_iarchive.ipp>
#include <boost/archive/impl/basic_binary_iprimitive.ipp>
#include <boost/serialization/level.hpp>
#include <boost/serialization/string.hpp>
#include <cstring>
#include <optional>
#include <streambuf>

#include "ppmpi/core/errors.hpp"

// The headers carry no Boost class information (no version or tracking): an archive then keeps
// no state between objects, so one archive per thread serves every message. Constructing an
// archive builds a std::locale (measured: ~17 % of the dispatcher's CPU at 60k jobs/s).
#define PPMPI_PLAIN_SERIALIZABLE(T) \
    BOOST_CLASS_IMPLEMENTATION(ppmpi::T, boost::serialization::object_serializable)
PPMPI_PLAIN_SERIALIZABLE(Hello)
PPMPI_PLAIN_SERIALIZABLE(Welcome)
PPMPI_PLAIN_SERIALIZABLE(FunctionDef)
PPMPI_PLAIN_SERIALIZABLE(Task)
PPMPI_PLAIN_SERIALIZABLE(Result)
PPMPI_PLAIN_SERIALIZABLE(Heartbeat)
PPMPI_PLAIN_SERIALIZABLE(Shutdown)
PPMPI_PLAIN_SERIALIZABLE(Goodbye)
PPMPI_PLAIN_SERIALIZABLE(Release)
PPMPI_PLAIN_SERIALIZABLE(Withdraw)
PPMPI_PLAIN_SERIALIZABLE(Gang)
PPMPI_PLAIN_SERIALIZABLE(Submit)
PPMPI_PLAIN_SERIALIZABLE(Waiting)

namespace ppmpi {
namespace {

// No archive header: both ends are built from the same source, and the header costs time.
constexpr unsigned kArchiveFlags = boost::archive::no_header | boost::archive::no_codecvt;

// Appends what an archive writes to whichever string is the current target.
class AppendBuffer : public std::streambuf {
  public:
    Bytes* target = nullptr;

  protected:
    std::streamsize xsputn(const char* data, std::streamsize n) override {
        target->append(data, static_cast<std::size_t>(n));
        return n;
    }
    int_type overflow(int_type c) override {
        if (!traits_type::eq_int_type(c, traits_type::eof()))
            target->push_back(static_cast<char>(c));
        return traits_type::not_eof(c);
    }
};

// Reads an existing buffer without copying it; reset() points it at the next one.
class ViewBuffer : public std::streambuf {
  public:
    void reset(const char* data, std::size_t size) {
        char* p = const_cast<char*>(data);  // streambuf's API is non-const; we never write
        setg(p, p, p + size);
    }
};

// Boost's binary archive sizes a string to the length it reads before reading the contents: a
// corrupt or hostile length would allocate up to 2^64 bytes first. This one checks the length
// against the bytes left in the header first (found by the fuzzer,
// tests/fuzz/fuzz_decode_frame.cpp). The wire format is Boost's binary archive unchanged.
class HeaderArchive : public boost::archive::binary_iarchive_impl<HeaderArchive, char,
                                                                  std::char_traits<char>> {
    using Base = boost::archive::binary_iarchive_impl<HeaderArchive, char, std::char_traits<char>>;
    friend class boost::archive::detail::interface_iarchive<HeaderArchive>;
    friend class boost::archive::basic_binary_iarchive<HeaderArchive>;
    friend class boost::archive::basic_binary_iprimitive<HeaderArchive, char,
                                                         std::char_traits<char>>;
    friend class boost::archive::load_access;

  public:
    HeaderArchive(ViewBuffer& source, unsigned flags) : Base(source, flags), source_(source) {}

  protected:
    using Base::load;
    void load(std::string& s) {
        std::size_t size = 0;
        Base::load(size);
        check(size);
        s.resize(size);
        if (size > 0) load_binary(s.data(), size);
    }

  private:
    void check(std::size_t size) {
        auto left = static_cast<std::size_t>(std::max<std::streamsize>(0, source_.in_avail()));
        if (size > left)
            throw ProtocolError("malformed message header: a string of " + std::to_string(size) +
                                " bytes in " + std::to_string(left) + " bytes left");
    }
    ViewBuffer& source_;
};

struct Writer {
    AppendBuffer sink;
    boost::archive::binary_oarchive archive{sink, kArchiveFlags};
};
struct Reader {
    ViewBuffer source;
    HeaderArchive archive{source, kArchiveFlags};
};
// One of each per thread (the dispatcher, a worker's comm thread, tests' threads).
thread_local std::optional<Writer> t_writer;
thread_local std::optional<Reader> t_reader;

template <class T> void put_int(Bytes& out, T value) {
    char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    out.append(raw, sizeof(T));
}

template <class T> T get_int(std::string_view frame, std::size_t& pos) {
    if (frame.size() - pos < sizeof(T))
        throw ProtocolError("truncated frame: expected an integer at byte " +
                            std::to_string(pos) + " of " + std::to_string(frame.size()));
    T value;
    std::memcpy(&value, frame.data() + pos, sizeof(T));
    pos += sizeof(T);
    return value;
}

Bytes encode_header(const Header& header) {
    if (!t_writer) t_writer.emplace();
    Bytes out;
    t_writer->sink.target = &out;
    std::uint8_t kind = static_cast<std::uint8_t>(header.index());
    t_writer->archive << kind;
    std::visit([&](const auto& alt) { t_writer->archive << alt; }, header);
    t_writer->sink.target = nullptr;
    return out;
}

template <std::size_t I> Header load_alternative(HeaderArchive& archive) {
    std::variant_alternative_t<I, Header> alt;
    archive >> alt;
    return Header{std::in_place_index<I>, std::move(alt)};
}

template <std::size_t... I>
Header load_by_index(std::size_t index, HeaderArchive& archive,
                     std::index_sequence<I...>) {
    using Loader = Header (*)(HeaderArchive&);
    static constexpr std::array<Loader, sizeof...(I)> loaders{&load_alternative<I>...};
    return loaders[index](archive);
}

Header decode_header(std::string_view bytes) {
    try {
        if (!t_reader) t_reader.emplace();
        t_reader->source.reset(bytes.data(), bytes.size());
        std::uint8_t kind = 0;
        t_reader->archive >> kind;
        if (kind >= std::variant_size_v<Header>)
            throw ProtocolError("unknown message kind " + std::to_string(kind));
        return load_by_index(kind, t_reader->archive,
                             std::make_index_sequence<std::variant_size_v<Header>>{});
    } catch (const ProtocolError&) {
        t_reader.reset();  // as below
        throw;
    } catch (const std::exception& e) {
        // archive_exception, or length_error/bad_alloc from a corrupt string length (Boost
        // sizes a string before reading it): all mean the same thing here. The reader is
        // rebuilt next time, in case the failure left anything behind in it.
        t_reader.reset();
        throw ProtocolError(std::string("malformed message header: ") + e.what());
    }
}

}  // namespace

// Messages [begin, end) as one frame: each payload is copied once, into the frame; buffers are
// referenced, never copied.
static Frame encode_range(const std::vector<Message>& messages, std::size_t begin,
                          std::size_t end) {
    std::vector<Bytes> headers;
    headers.reserve(end - begin);
    std::size_t total = sizeof(std::uint32_t);
    for (std::size_t i = begin; i < end; ++i) {
        headers.push_back(encode_header(messages[i].header));
        total += 16 + 8 * messages[i].buffers.size() + headers.back().size() +
                 messages[i].payload.size();
    }
    Frame frame;
    frame.urgent = std::any_of(messages.begin() + begin, messages.begin() + end, [](const Message& m) {
        Kind kind = kind_of(m.header);
        return kind != Kind::Task && kind != Kind::FunctionDef && kind != Kind::Heartbeat;
    });
    frame.bytes.reserve(total);
    put_int<std::uint32_t>(frame.bytes, static_cast<std::uint32_t>(end - begin));
    for (std::size_t i = begin; i < end; ++i) {
        const Message& m = messages[i];
        const Bytes& header = headers[i - begin];
        put_int<std::uint32_t>(frame.bytes, static_cast<std::uint32_t>(header.size()));
        put_int<std::uint64_t>(frame.bytes, m.payload.size());
        put_int<std::uint32_t>(frame.bytes, static_cast<std::uint32_t>(m.buffers.size()));
        for (const Buffer& b : m.buffers) put_int<std::uint64_t>(frame.bytes, b.size);
        frame.bytes += header;
        frame.bytes += m.payload;
        frame.buffers.insert(frame.buffers.end(), m.buffers.begin(), m.buffers.end());
    }
    return frame;
}

Bytes encode_frame(const std::vector<Message>& messages) {
    for (const Message& m : messages)
        PPMPI_ENFORCE(m.buffers.empty(),
                      "encode_frame: a message with buffers needs encode_frames");
    return encode_range(messages, 0, messages.size()).bytes;
}

std::vector<Frame> encode_frames(const std::vector<Message>& messages) {
    std::vector<Frame> frames;
    std::size_t first = 0, batch_bytes = 0;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const Message& m = messages[i];
        if (m.payload.size() > kMaxPayloadBytes)
            throw ProtocolError("a " + std::string(kind_name(kind_of(m.header))) + " payload of " +
                                std::to_string(m.payload.size()) +
                                " bytes exceeds the 2 GiB limit of one MPI message");
        std::size_t size = m.payload.size() + 1024 + 8 * m.buffers.size();  // + header, framing
        if (i > first && batch_bytes + size > kMaxFrameBytes) {
            frames.push_back(encode_range(messages, first, i));
            first = i;
            batch_bytes = 0;
        }
        batch_bytes += size;
    }
    if (first < messages.size()) frames.push_back(encode_range(messages, first, messages.size()));
    return frames;
}

// Reads one message's buffer list and takes its buffers from `buffers`, from `next` on.
static Buffers take_buffers(std::string_view frame, std::size_t& pos, Buffers& buffers,
                            std::size_t& next) {
    auto count = get_int<std::uint32_t>(frame, pos);
    if (count > buffers.size() - next)
        throw ProtocolError("frame lists " + std::to_string(count) + " more buffers than the " +
                            std::to_string(buffers.size()) + " that came with it");
    Buffers mine;
    mine.reserve(count);
    for (std::uint32_t b = 0; b < count; ++b) {
        auto size = get_int<std::uint64_t>(frame, pos);
        if (size != buffers[next].size)
            throw ProtocolError("buffer " + std::to_string(next) + " has " +
                                std::to_string(buffers[next].size) + " bytes, the frame says " +
                                std::to_string(size));
        mine.push_back(std::move(buffers[next++]));
    }
    return mine;
}

std::vector<Message> decode_frame(std::string_view frame, Buffers buffers) {
    std::size_t pos = 0, next_buffer = 0;
    auto count = get_int<std::uint32_t>(frame, pos);
    std::vector<Message> messages;
    messages.reserve(std::min<std::size_t>(count, frame.size() / 16 + 1));
    for (std::uint32_t i = 0; i < count; ++i) {
        auto header_len = get_int<std::uint32_t>(frame, pos);
        auto payload_len = get_int<std::uint64_t>(frame, pos);
        Buffers mine = take_buffers(frame, pos, buffers, next_buffer);
        if (frame.size() - pos < header_len || frame.size() - pos - header_len < payload_len)
            throw ProtocolError("truncated frame: message " + std::to_string(i) + " of " +
                                std::to_string(count) + " runs past the end");
        Message m{decode_header(frame.substr(pos, header_len)), {}, std::move(mine)};
        pos += header_len;
        m.payload.assign(frame.data() + pos, payload_len);
        pos += payload_len;
        messages.push_back(std::move(m));
    }
    if (pos != frame.size())
        throw ProtocolError("frame has " + std::to_string(frame.size() - pos) +
                            " trailing bytes");
    if (next_buffer != buffers.size())
        throw ProtocolError("frame came with " + std::to_string(buffers.size()) +
                            " buffers but lists " + std::to_string(next_buffer));
    return messages;
}

Kind kind_of(const Header& header) { return static_cast<Kind>(header.index()); }

const char* kind_name(Kind kind) {
    static constexpr const char* names[] = {"Hello",  "Welcome",   "FunctionDef",
                                            "Task",   "Result",    "Heartbeat",
                                            "Shutdown", "Goodbye", "Release", "Withdraw", "Gang",
                                            "Submit", "Waiting"};
    auto index = static_cast<std::size_t>(kind);
    return index < std::size(names) ? names[index] : "Unknown";
}

}  // namespace ppmpi
