// SPDX-License-Identifier: Apache-2.0
#include "HadamardPlugin.h"
#include "hadamard_launch.h"

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <type_traits>

using namespace nvinfer1;

namespace compsrt
{
namespace
{
constexpr char const* kNAME = "HadamardTransform";
constexpr char const* kVERSION = "1";
constexpr char const* kNAMESPACE = "compsrt";

// The library is not linked against libnvinfer (nor libtensorrt_rtx): the few TensorRT C entry points
// it needs (getPluginRegistry, getInferLibMajorVersion) come from the TensorRT library that the
// process has already loaded.
void* trtSymbol(char const* name) noexcept
{
    if (void* sym = dlsym(RTLD_DEFAULT, name))
        return sym;
    // Python and other plugin hosts load TensorRT with RTLD_LOCAL: ask each candidate by soname,
    // RTLD_NOLOAD so that nothing new is mapped.
    for (char const* lib : {"libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so", "libtensorrt_rtx.so.1"})
    {
        if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD))
        {
            void* sym = dlsym(h, name);
            dlclose(h);
            if (sym)
                return sym;
        }
    }
    return nullptr;
}

std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder{nullptr}; // set by TensorRT through setLoggerFinder()

// ILoggerFinder is a plain interface in the TensorRT 10 headers and an IVersionedInterface from
// TensorRT 11 on; TensorRT-RTX (1.7 measured) uses the later layout. With the other layout,
// findLogger() sits in another vtable slot (TensorRT 10 headers in TensorRT-RTX call
// getAPILanguage() instead), so the finder is used only when the two layouts agree.
constexpr bool kHeaderFinderVersioned = std::is_base_of<IVersionedInterface, ILoggerFinder>::value;

// 1 / 0: the TensorRT library loaded in this process has the versioned / plain layout; -1: unknown.
int runtimeFinderVersioned() noexcept
{
    if (void* h = dlopen("libtensorrt_rtx.so.1", RTLD_LAZY | RTLD_NOLOAD))
    {
        dlclose(h);
        return 1;
    }
    using GetMajor = int32_t (*)() noexcept;
    auto const major = reinterpret_cast<GetMajor>(trtSymbol("getInferLibMajorVersion"));
    if (major == nullptr)
        return -1;
    return major() >= 11 ? 1 : 0;
}

// The logger of the builder / runtime that called the plugin method (through the ILoggerFinder that
// TensorRT passes to setLoggerFinder() when it loads the library); nullptr when there is none.
ILogger* pluginLogger() noexcept
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    return gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
}

// To TensorRT's logger, else (no logger finder, or one of another layout) to stderr.
void logMessage(ILogger::Severity severity, char const* msg) noexcept
{
    try
    {
        std::string const line = std::string("[compsrt HadamardTransform] ") + msg;
        if (ILogger* l = pluginLogger())
            l->log(severity, line.c_str());
        else
            std::cerr << line << std::endl;
    }
    catch (...)
    {
    }
}

void logError(char const* msg) noexcept
{
    logMessage(ILogger::Severity::kERROR, msg);
}

char const* typeName(DataType t) noexcept
{
    switch (t)
    {
    case DataType::kFLOAT: return "FP32";
    case DataType::kHALF: return "FP16";
    case DataType::kINT8: return "INT8";
    case DataType::kINT32: return "INT32";
    case DataType::kBOOL: return "BOOL";
    case DataType::kUINT8: return "UINT8";
    default: return "this type";
    }
}

// Read a numeric plugin field whatever numeric type the producer used (the ONNX parser
// passes INT32 / FLOAT32; serialized engines use what getFieldsToSerialize wrote).
bool readNumber(PluginField const& f, double& v) noexcept
{
    if (f.data == nullptr || f.length < 1)
        return false;
    switch (f.type)
    {
    case PluginFieldType::kINT32: v = static_cast<int32_t const*>(f.data)[0]; return true;
    case PluginFieldType::kINT64: v = static_cast<double>(static_cast<int64_t const*>(f.data)[0]); return true;
    case PluginFieldType::kINT16: v = static_cast<int16_t const*>(f.data)[0]; return true;
    case PluginFieldType::kINT8: v = static_cast<int8_t const*>(f.data)[0]; return true;
    case PluginFieldType::kFLOAT32: v = static_cast<float const*>(f.data)[0]; return true;
    case PluginFieldType::kFLOAT64: v = static_cast<double const*>(f.data)[0]; return true;
    default: return false;
    }
}
} // namespace

bool HadamardParams::check(char* why, size_t size) const noexcept
{
    int32_t const m = width > 0 ? width : n;
    if (!compsrtHadamardValidate(n, m))
        std::snprintf(why, size, "invalid attributes n = %d, width = %d: n must be a power of two in [2, 1024] "
            "and 1 <= width <= n (0 = n)", n, width);
    else if (axis != -1 && axis < 0)
        std::snprintf(why, size, "invalid attribute axis = %d: only the last axis is supported (axis = -1)", axis);
    else if (quantize && (!(scale > 0.F) || !std::isfinite(scale) || !std::isfinite(shift)))
        std::snprintf(why, size, "invalid quantizer shift = %g, scale = %g: scale must be finite and > 0, "
            "shift finite", static_cast<double>(shift), static_cast<double>(scale));
    else if (quantize && (qmin < -128 || qmax > 127 || qmin > qmax))
        std::snprintf(why, size, "invalid quantizer bounds qmin = %d, qmax = %d: need -128 <= qmin <= qmax <= 127",
            qmin, qmax);
    else
        return true;
    return false;
}

HadamardPlugin::HadamardPlugin(HadamardParams const& p, std::string ns)
    : mP(p)
    , mNamespace(std::move(ns))
{
    if (mP.width <= 0)
        mP.width = mP.n;
}

IPluginCapability* HadamardPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* HadamardPlugin::clone() noexcept
{
    try
    {
        auto p = std::make_unique<HadamardPlugin>(mP, mNamespace);
        return p.release();
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

char const* HadamardPlugin::getPluginName() const noexcept
{
    return kNAME;
}
char const* HadamardPlugin::getPluginVersion() const noexcept
{
    return kVERSION;
}
char const* HadamardPlugin::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}
int32_t HadamardPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t HadamardPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != 1 || nbOutputs != 1)
    {
        logError("expects one input and one output");
        return -1;
    }
    if (inputTypes[0] != DataType::kFLOAT && inputTypes[0] != DataType::kHALF)
    {
        char msg[160];
        std::snprintf(msg, sizeof(msg), "input type %s is not supported: the input must be FP32 or FP16 "
            "(cast it before the node)", typeName(inputTypes[0]));
        logError(msg);
        return -1;
    }
    outputTypes[0] = mP.quantize ? DataType::kINT8 : inputTypes[0];
    return 0;
}

int32_t HadamardPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || inputs[0].nbDims < 1)
        return -1;
    int32_t const rank = inputs[0].nbDims;
    if (mP.axis != -1 && mP.axis != rank - 1)
    {
        logError("only the last axis is supported (axis = -1)");
        return -1;
    }
    IDimensionExpr const* last = inputs[0].d[rank - 1];
    if (last->isConstant() && last->getConstantValue() != mP.width)
    {
        logError("input last dimension != width");
        return -1;
    }
    outputs[0] = inputs[0];
    outputs[0].d[rank - 1] = exprBuilder.constant(mP.n);
    return 0;
}

bool HadamardPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || pos < 0 || pos > 1)
        return false;
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
        return false;
    if (pos == 0)
        return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    return d.type == (mP.quantize ? DataType::kINT8 : inOut[0].desc.type);
}

int32_t HadamardPlugin::configurePlugin(DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*,
    int32_t) noexcept
{
    return 0;
}

size_t HadamardPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*, int32_t) const noexcept
{
    return 0;
}

char const* HadamardPlugin::getTimingCacheID() noexcept
{
    // Attributes only (TensorRT adds the I/O shapes and formats); floats as exact hex.
    char id[192];
    std::snprintf(id, sizeof(id), "hadamard_n%d_w%d_axis%d_q%d_shift%a_scale%a_qmin%d_qmax%d", mP.n, mP.width,
        mP.axis, mP.quantize, static_cast<double>(mP.shift), static_cast<double>(mP.scale), mP.qmin, mP.qmax);
    mTimingCacheID = id;
    return mTimingCacheID.c_str();
}

int32_t HadamardPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*, int32_t nbOutputs) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || in[0].dims.nbDims < 1)
        return -1;
    return in[0].dims.d[in[0].dims.nbDims - 1] == mP.width ? 0 : -1;
}

int32_t HadamardPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    Dims const& d = inputDesc[0].dims;
    if (d.nbDims < 1 || d.d[d.nbDims - 1] != mP.width)
        return -1;
    long long rows = 1;
    for (int32_t i = 0; i + 1 < d.nbDims; ++i)
        rows *= d.d[i];
    int dtype;
    if (inputDesc[0].type == DataType::kFLOAT)
        dtype = COMPSRT_DTYPE_FP32;
    else if (inputDesc[0].type == DataType::kHALF)
        dtype = COMPSRT_DTYPE_FP16;
    else
        return -1;
    if (mP.quantize && outputDesc[0].type != DataType::kINT8)
        return -1;
    cudaError_t const err = compsrtHadamardLaunch(inputs[0], outputs[0], dtype, mP.quantize, rows, mP.n, mP.width,
        mP.shift, mP.scale, mP.qmin, mP.qmax, stream);
    return err == cudaSuccess ? 0 : -1;
}

IPluginV3* HadamardPlugin::attachToContext(IPluginResourceContext*) noexcept
{
    return clone();
}

PluginFieldCollection const* HadamardPlugin::getFieldsToSerialize() noexcept
{
    mFields.clear();
    mFields.emplace_back("n", &mP.n, PluginFieldType::kINT32, 1);
    mFields.emplace_back("axis", &mP.axis, PluginFieldType::kINT32, 1);
    mFields.emplace_back("width", &mP.width, PluginFieldType::kINT32, 1);
    mFields.emplace_back("quantize", &mP.quantize, PluginFieldType::kINT32, 1);
    mFields.emplace_back("shift", &mP.shift, PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back("scale", &mP.scale, PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back("qmin", &mP.qmin, PluginFieldType::kINT32, 1);
    mFields.emplace_back("qmax", &mP.qmax, PluginFieldType::kINT32, 1);
    mFC.nbFields = static_cast<int32_t>(mFields.size());
    mFC.fields = mFields.data();
    return &mFC;
}

// ------------------------------------------------------------------ creator
HadamardPluginCreator::HadamardPluginCreator()
    : mNamespace(kNAMESPACE)
{
    // Same order as the Python creator (compsrt.plugins.core.FIELD_ORDER).
    for (char const* name : {"n", "axis", "width", "quantize", "shift", "scale", "qmin", "qmax"})
    {
        bool const isFloat = std::strcmp(name, "shift") == 0 || std::strcmp(name, "scale") == 0;
        mFieldNames.emplace_back(name, nullptr, isFloat ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32, 1);
    }
    mFC.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFC.fields = mFieldNames.data();
}

char const* HadamardPluginCreator::getPluginName() const noexcept
{
    return kNAME;
}
char const* HadamardPluginCreator::getPluginVersion() const noexcept
{
    return kVERSION;
}
char const* HadamardPluginCreator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}
PluginFieldCollection const* HadamardPluginCreator::getFieldNames() noexcept
{
    return &mFC;
}

IPluginV3* HadamardPluginCreator::createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept
{
    try
    {
        HadamardParams p;
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            PluginField const& f = fc->fields[i];
            double v = 0.0;
            if (f.name == nullptr || !readNumber(f, v))
                continue; // e.g. plugin_version / plugin_namespace strings
            std::string const name(f.name);
            if (name == "n")
                p.n = static_cast<int32_t>(v);
            else if (name == "axis")
                p.axis = static_cast<int32_t>(v);
            else if (name == "width")
                p.width = static_cast<int32_t>(v);
            else if (name == "quantize")
                p.quantize = v != 0.0 ? 1 : 0;
            else if (name == "shift")
                p.shift = static_cast<float>(v);
            else if (name == "scale")
                p.scale = static_cast<float>(v);
            else if (name == "qmin")
                p.qmin = static_cast<int32_t>(v);
            else if (name == "qmax")
                p.qmax = static_cast<int32_t>(v);
        }
        if (p.width <= 0)
            p.width = p.n;
        char why[200];
        if (!p.check(why, sizeof(why)))
        {
            logError(why);
            return nullptr;
        }
        return new HadamardPlugin(p, mNamespace);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

} // namespace compsrt

// ------------------------------------------------------------------ library entry points
// The only exported symbols (-fvisibility=hidden + exports.map).
// trtexec --dynamicPlugins=libcompsrt_plugins.so and IPluginRegistry::loadLibrary() use the first two.
// No REGISTER_TENSORRT_PLUGIN static registration: loading the library twice would otherwise
// register the creator twice.
#define COMPSRT_EXPORT __attribute__((visibility("default")))

extern "C" COMPSRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    int const runtime = compsrt::runtimeFinderVersioned();
    bool const usable = runtime == (compsrt::kHeaderFinderVersioned ? 1 : 0);
    if (finder != nullptr && !usable)
    {
        std::cerr << "[compsrt HadamardTransform] libcompsrt_plugins.so was built against TensorRT "
                  << NV_TENSORRT_MAJOR << " headers, whose ILoggerFinder differs from the loaded TensorRT's"
                  << (runtime < 0 ? " (unknown version)" : "")
                  << ": plugin messages go to stderr; rebuild it against the headers of this TensorRT" << std::endl;
    }
    std::lock_guard<std::mutex> lock(compsrt::gLoggerMutex);
    compsrt::gLoggerFinder = usable ? finder : nullptr;
}

extern "C" COMPSRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static compsrt::HadamardPluginCreator sCreator;
    static nvinfer1::IPluginCreatorInterface* const kCREATORS[] = {&sCreator};
    nbCreators = 1;
    return kCREATORS;
}

// For applications that dlopen the library themselves: registers the creator in the global
// registry (getPluginRegistry() of the TensorRT library already loaded in the process) under
// namespace "compsrt". Returns true on success, false if no TensorRT is loaded or the registry
// refuses (a creator of the same name, e.g. the Python plugin, is registered already).
extern "C" COMPSRT_EXPORT bool compsrtRegisterPlugins()
{
    using GetRegistry = nvinfer1::IPluginRegistry* (*) () noexcept;
    auto const getRegistry = reinterpret_cast<GetRegistry>(compsrt::trtSymbol("getPluginRegistry"));
    if (getRegistry == nullptr)
    {
        compsrt::logError("compsrtRegisterPlugins: no TensorRT library (libnvinfer / libtensorrt_rtx) is loaded");
        return false;
    }
    nvinfer1::IPluginRegistry* registry = getRegistry();
    static compsrt::HadamardPluginCreator sCreator;
    return registry != nullptr && registry->registerCreator(sCreator, "compsrt");
}
