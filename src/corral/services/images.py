"""Images: name -> target descriptor records (the local object validates, applies field
masks, publishes events, asks for collection on sync deletes) and the gRPC service
containerd.services.images.v1.Images. The local object works on the API's Image messages."""

from google.protobuf import empty_pb2

from corral.api.containerd.events import image_pb2 as image_events
from corral.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc

from . import filters
from .errors import InvalidArgument
from .fieldpaths import check_labels, update_labels
from .grpcutil import namespace, rpc
from .records import image_msg, image_rec


def _getter(img):
    t = img.target
    fields = {"name": img.name, "target.mediatype": t.media_type, "target.media_type": t.media_type,
              "target.digest": t.digest, "target.size": str(t.size)}
    return filters.getter(fields, dict(img.labels))


def validate(img):
    if not img.name:
        raise InvalidArgument("image name must not be empty")
    if not img.target.digest:
        raise InvalidArgument(f"image {img.name}: target digest must be set")
    if not img.target.media_type:
        raise InvalidArgument(f"image {img.name}: target media type must be set")
    check_labels(dict(img.labels))


class Images:
    def __init__(self, db, publish=None, collect=None, changed=None):
        self.db = db
        self.publish = publish or (lambda ns, topic, msg: None)
        self.collect = collect  # collect(ns): synchronous garbage collection, if available
        self.changed = changed or (lambda: None)

    def get(self, ns, name):
        return image_msg(self.db.get_image(ns, name))

    def list(self, ns, filter_strings=()):
        match = filters.parse(filter_strings)
        return [i for i in map(image_msg, self.db.list_images(ns)) if match(_getter(i))]

    def create(self, ns, img):
        validate(img)
        img = image_msg(self.db.create_image(ns, image_rec(img)))
        self.publish(ns, "/images/create", image_events.ImageCreate(name=img.name, labels=dict(img.labels)))
        return img

    def update(self, ns, img, paths):
        if not img.name:
            raise InvalidArgument("image name must be set for an update")
        cur = self.get(ns, img.name)
        new = images_pb2.Image.FromString(cur.SerializeToString())
        paths = paths or ["labels", "target"]
        label_paths = [p for p in paths if p == "labels" or p.startswith("labels.")]
        if label_paths:
            labels = update_labels(dict(cur.labels), dict(img.labels), label_paths)
            new.labels.clear()
            new.labels.update(labels)
        for p in paths:
            if p in label_paths:
                continue
            if p == "target":
                new.target.CopyFrom(img.target)
            elif p.startswith("annotations") or p.startswith("target.annotations"):
                key = p.split(".", 2)[-1] if p.count(".") else None
                if key and key != "annotations":
                    if key in img.target.annotations:
                        new.target.annotations[key] = img.target.annotations[key]
                    else:
                        new.target.annotations.pop(key, None)
                else:
                    new.target.annotations.clear()
                    new.target.annotations.update(img.target.annotations)
            elif p in ("name", "created_at"):
                raise InvalidArgument(f"image {img.name}: field {p} is immutable")
            else:
                raise InvalidArgument(f"image {img.name}: cannot update unknown field {p!r}")
        validate(new)
        new = image_msg(self.db.update_image(ns, image_rec(new)))
        self.publish(ns, "/images/update", image_events.ImageUpdate(name=new.name, labels=dict(new.labels)))
        return new

    def delete(self, ns, name, sync=False):
        self.db.delete_image(ns, name)
        self.publish(ns, "/images/delete", image_events.ImageDelete(name=name))
        if sync and self.collect is not None:
            self.collect(ns)
        else:
            self.changed()


class ImagesService(images_pb2_grpc.ImagesServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Get(self, request, context):
        return images_pb2.GetImageResponse(image=self.local.get(namespace(context), request.name))

    @rpc
    def List(self, request, context):
        return images_pb2.ListImagesResponse(images=self.local.list(namespace(context), list(request.filters)))

    @rpc
    def Create(self, request, context):
        return images_pb2.CreateImageResponse(image=self.local.create(namespace(context), request.image))

    @rpc
    def Update(self, request, context):
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else None
        return images_pb2.UpdateImageResponse(image=self.local.update(namespace(context), request.image, paths))

    @rpc
    def Delete(self, request, context):
        self.local.delete(namespace(context), request.name, request.sync)
        return empty_pb2.Empty()

    def add_to_server(self, server):
        images_pb2_grpc.add_ImagesServicer_to_server(self, server)
