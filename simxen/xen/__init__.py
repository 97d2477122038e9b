"""simxen.xen"""
