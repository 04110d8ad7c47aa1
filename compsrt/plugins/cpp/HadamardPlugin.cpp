// SPDX-License-Identifier: Apache-2.0
#include "HadamardPlugin.h"
#include "hadamard_launch.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>

using namespace nvinfer1;

namespace compsrt
{
namespace
{
constexpr char const* kNAME = "HadamardTransform";
constexpr char const* kVERSION = "1";
constexpr char const* kNAMESPACE = "compsrt";

void logError(char const* msg) noexcept
{
    std::cerr << "[compsrt HadamardTransform] " << msg << std::endl;
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

bool HadamardParams::valid() const noexcept
{
    int32_t const m = width > 0 ? width : n;
    if (!compsrtHadamardValidate(n, m))
        return false;
    if (quantize)
    {
        if (!(scale > 0.F) || !std::isfinite(scale) || !std::isfinite(shift))
            return false;
        if (qmin < -128 || qmax > 127 || qmin > qmax)
            return false;
    }
    return true;
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
        return -1;
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
    for (char const* name : {"n", "axis", "width", "quantize", "qmin", "qmax"})
        mFieldNames.emplace_back(name, nullptr, PluginFieldType::kINT32, 1);
    for (char const* name : {"shift", "scale"})
        mFieldNames.emplace_back(name, nullptr, PluginFieldType::kFLOAT32, 1);
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
        if (!p.valid())
        {
            logError("invalid attributes (n power of two in [2,1024], 1 <= width <= n, scale > 0, "
                     "-128 <= qmin <= qmax <= 127)");
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
// trtexec --dynamicPlugins=libcompsrt_plugins.so and IPluginRegistry::loadLibrary() use these.
// No REGISTER_TENSORRT_PLUGIN static registration: loading the library twice would otherwise
// register the creator twice.
extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder*) {}

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static compsrt::HadamardPluginCreator sCreator;
    static nvinfer1::IPluginCreatorInterface* const kCREATORS[] = {&sCreator};
    nbCreators = 1;
    return kCREATORS;
}

// For applications that dlopen the library themselves: registers the creator in the global
// registry under namespace "compsrt". Returns true on success.
extern "C" bool compsrtRegisterPlugins()
{
    static compsrt::HadamardPluginCreator sCreator;
    return getPluginRegistry()->registerCreator(sCreator, "compsrt");
}
