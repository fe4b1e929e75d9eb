// dlib reference tool for tools/modelbuild/face_encoder.py: dump the ResNet parameters, embed chips,
// make dlib face chips (frontal detector, 68 landmarks, get_face_chip_details(150, 0.25)).
#include <dlib/dnn.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <fstream>
#include <iostream>
using namespace dlib;
using namespace std;

template <template <int,template<typename>class,int,typename> class block, int N, template<typename>class BN, typename SUBNET>
using residual = add_prev1<block<N,BN,1,tag1<SUBNET>>>;
template <template <int,template<typename>class,int,typename> class block, int N, template<typename>class BN, typename SUBNET>
using residual_down = add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,BN,2,tag1<SUBNET>>>>>>;
template <int N, template <typename> class BN, int stride, typename SUBNET>
using block  = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>;
template <int N, typename SUBNET> using ares      = relu<residual<block,N,affine,SUBNET>>;
template <int N, typename SUBNET> using ares_down = relu<residual_down<block,N,affine,SUBNET>>;
template <typename SUBNET> using alevel0 = ares_down<256,SUBNET>;
template <typename SUBNET> using alevel1 = ares<256,ares<256,ares_down<256,SUBNET>>>;
template <typename SUBNET> using alevel2 = ares<128,ares<128,ares_down<128,SUBNET>>>;
template <typename SUBNET> using alevel3 = ares<64,ares<64,ares<64,ares_down<64,SUBNET>>>>;
template <typename SUBNET> using alevel4 = ares<32,ares<32,ares<32,SUBNET>>>;
using anet_type = loss_metric<fc_no_bias<128,avg_pool_everything<
    alevel0<alevel1<alevel2<alevel3<alevel4<
    max_pool<3,3,2,2,relu<affine<con<32,7,7,2,2,
    input_rgb_image_sized<150>>>>>>>>>>>>>;

static std::vector<matrix<rgb_pixel>> read_images(const string& path, long n, long h, long w) {
    std::vector<matrix<rgb_pixel>> out(n);
    ifstream f(path, ios::binary);
    std::vector<unsigned char> buf(h * w * 3);
    for (long i = 0; i < n; ++i) {
        f.read((char*)buf.data(), buf.size());
        if (!f) throw runtime_error("short read " + path);
        out[i].set_size(h, w);
        for (long r = 0; r < h; ++r)
            for (long c = 0; c < w; ++c) {
                const unsigned char* p = &buf[(r * w + c) * 3];
                out[i](r, c) = rgb_pixel(p[0], p[1], p[2]);
            }
    }
    return out;
}

static void embed(anet_type& net, const std::vector<matrix<rgb_pixel>>& chips, ofstream& out) {
    const size_t batch = 16;
    for (size_t i = 0; i < chips.size(); i += batch) {
        std::vector<matrix<rgb_pixel>> part(chips.begin() + i, chips.begin() + min(chips.size(), i + batch));
        std::vector<matrix<float,0,1>> d = net(part);
        for (auto& v : d) out.write((const char*)&v(0), 128 * sizeof(float));
    }
}

// Writes, per computational layer: layer index, value count, float32 values (affine: gamma then beta).
struct param_dumper {
    ofstream& out;
    void write(size_t idx, const float* data, uint64_t n) {
        uint64_t i64 = idx;
        out.write((const char*)&i64, 8);
        out.write((const char*)&n, 8);
        if (n) out.write((const char*)data, n * sizeof(float));
    }
    void operator()(size_t idx, affine_& l) {
        auto g = l.get_gamma();
        auto b = l.get_beta();
        std::vector<float> v(g.size() + b.size());
        std::copy(g.host(), g.host() + g.size(), v.begin());
        std::copy(b.host(), b.host() + b.size(), v.begin() + g.size());
        write(idx, v.data(), v.size());
    }
    template <typename T> void operator()(size_t idx, T& l) {
        const tensor& p = l.get_layer_params();
        write(idx, p.size() ? p.host() : nullptr, p.size());
    }
};

int main(int argc, char** argv) {
    string mode = argv[1];
    anet_type net;
    deserialize(argv[2]) >> net;
    if (mode == "dump") {  // dump <model> <out.bin>
        cerr << net << endl;
        ofstream out(argv[3], ios::binary);
        visit_computational_layers(net, param_dumper{out});
    } else if (mode == "embed") {  // embed <model> <chips.u8> <n> <out.f32>
        long n = atol(argv[4]);
        auto chips = read_images(argv[3], n, 150, 150);
        ofstream out(argv[5], ios::binary);
        embed(net, chips, out);
    } else if (mode == "chips") {  // chips <model> <sp68> <imgs.u8> <n> <h> <w> <prefix>
        shape_predictor sp;
        deserialize(argv[3]) >> sp;
        long n = atol(argv[5]), h = atol(argv[6]), w = atol(argv[7]);
        string prefix = argv[8];
        auto imgs = read_images(argv[4], n, h, w);
        frontal_face_detector det = get_frontal_face_detector();
        std::vector<matrix<rgb_pixel>> chips;
        ofstream found(prefix + ".found", ios::binary), lm(prefix + ".landmarks.f64"),
                 tf(prefix + ".tform.f64"), ch(prefix + ".chips.u8", ios::binary);
        for (long i = 0; i < n; ++i) {
            auto dets = det(imgs[i]);
            unsigned char ok = 0;
            double best = 1e18; rectangle rect;
            for (auto& d : dets) {  // detection nearest the image centre
                double dist = length_squared(center(d) - point(w / 2, h / 2));
                if (dist < best) { best = dist; rect = d; ok = 1; }
            }
            found.write((const char*)&ok, 1);
            if (!ok) continue;
            full_object_detection shape = sp(imgs[i], rect);
            for (unsigned k = 0; k < 68; ++k) {
                double xy[2] = {(double)shape.part(k).x(), (double)shape.part(k).y()};
                lm.write((const char*)xy, sizeof xy);
            }
            chip_details cd = get_face_chip_details(shape, 150, 0.25);
            point_transform_affine to_chip = get_mapping_to_chip(cd);
            double m[6] = {to_chip.get_m()(0,0), to_chip.get_m()(0,1), to_chip.get_b()(0),
                           to_chip.get_m()(1,0), to_chip.get_m()(1,1), to_chip.get_b()(1)};
            tf.write((const char*)m, sizeof m);
            matrix<rgb_pixel> chip;
            extract_image_chip(imgs[i], cd, chip);
            for (long r = 0; r < 150; ++r)
                for (long c = 0; c < 150; ++c) {
                    unsigned char p[3] = {chip(r,c).red, chip(r,c).green, chip(r,c).blue};
                    ch.write((const char*)p, 3);
                }
            chips.push_back(chip);
        }
        ofstream out(prefix + ".emb.f32", ios::binary);
        embed(net, chips, out);
    } else {
        cerr << "unknown mode" << endl;
        return 2;
    }
    return 0;
}
